"""A host's network interfaces as its node reported them, and `refresh` asking the node
again, through the SDK against a real agent."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from tests.conftest import require_root
from tests.support.agent import Agent
from tests.support.demo import wait_until
from tests.support.engine import RunningEngine, start_engine

pytestmark = pytest.mark.slow  # a real agent over libvirt


@pytest.fixture
def engine() -> Iterator[RunningEngine]:
    require_root()
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-facts-"))
    base.chmod(0o755)
    running = start_engine(base / "engine")
    yield running
    running.stop()
    shutil.rmtree(base, ignore_errors=True)


def test_host_nics_and_refresh(engine: RunningEngine) -> None:
    conn = sdk.Connection(url=engine.url, username="admin@internal", password=engine.password,
                          ca_file=str(engine.ca_file))
    agent = Agent(engine.runtime.settings.data_dir.parent / "node", engine_ca=engine.ca_file)
    agent.start()
    try:
        hosts = conn.system_service().hosts_service()
        host = hosts.add(types.Host(name="facts", address="127.0.0.1", port=agent.port,
                                    cluster=types.Cluster(name="Default"),
                                    ssh=types.Ssh(fingerprint=agent.key_fingerprint())))
        service = hosts.host_service(host.id)
        wait_until(lambda: service.get().status == types.HostStatus.UP, 180,
                   "the host to come up")
        nics = conn.follow_link(service.get().nics)
        names = [nic.name for nic in nics]
        assert names, "the node reported no network interface"
        one = service.nics_service().nic_service(nics[0].id).get()
        assert one.name == nics[0].name and one.host.id == host.id
        with pytest.raises(sdk.NotFoundError):
            service.nics_service().nic_service("00000000-0000-0000-0000-000000000001").get()

        service.refresh()
        jobs = conn.system_service().jobs_service()
        done = wait_until(lambda: [j for j in jobs.list(search="description=Refreshing*")
                                   if j.status != types.JobStatus.STARTED], 180,
                          "the refresh job to end")
        assert [j.status for j in done] == [types.JobStatus.FINISHED]
        events = [e.description for e in conn.system_service().events_service().list(max=20)]
        assert "Host facts's capabilities were refreshed" in events
        assert service.get().memory > 0
        with pytest.raises(sdk.NotFoundError):
            hosts.host_service(str(uuid.uuid4())).refresh()
    finally:
        agent.stop()
        conn.close()
