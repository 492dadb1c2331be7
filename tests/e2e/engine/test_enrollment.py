"""Enrolling nodes: a node that announces itself waits for approval; one added by address
joins at once. Both end with an engine-issued certificate and the host up."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from tests.conftest import require_root
from tests.support.agent import Agent
from tests.support.demo import wait_until
from tests.support.engine import RunningEngine, start_engine

# Real agent processes enroll through the gateway: seconds each.
pytestmark = pytest.mark.slow


@pytest.fixture
def engine() -> Iterator[RunningEngine]:
    require_root()
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-enroll-"))
    base.chmod(0o755)
    running = start_engine(base / "engine")
    yield running
    running.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def connection(engine: RunningEngine) -> Iterator[sdk.Connection]:
    conn = sdk.Connection(url=engine.url, username="admin@internal", password=engine.password,
                          ca_file=str(engine.ca_file))
    yield conn
    conn.close()


def _gateway(engine: RunningEngine) -> str:
    return f"https://127.0.0.1:{engine.runtime.settings.gateway_port}"


def test_a_node_that_announces_itself_waits_for_approval(
    engine: RunningEngine, connection: sdk.Connection
) -> None:
    agent = Agent(engine.runtime.settings.data_dir.parent / "announcer",
                  engine_url=_gateway(engine), engine_ca=engine.ca_file)
    agent.start()
    try:
        hosts = connection.system_service().hosts_service()
        pending = wait_until(lambda: next(iter(hosts.list()), None), 60, "the node to announce")
        assert pending.status == types.HostStatus.PENDING_APPROVAL
        assert pending.address == "127.0.0.1"
        events = connection.system_service().events_service().list(max=5)
        assert any("asks to join; approve it" in e.description for e in events)
        hosts.host_service(pending.id).approve()
        up = wait_until(lambda: (h := hosts.host_service(pending.id).get()).status ==
                        types.HostStatus.UP and h, 60, "the approved host to come up")
        assert up.hardware_information.uuid
        assert up.memory > 0 and up.cpu.topology.sockets >= 1
        assert up.certificate is not None
    finally:
        agent.stop()


def test_a_host_added_by_address_joins_without_approval(
    engine: RunningEngine, connection: sdk.Connection
) -> None:
    agent = Agent(engine.runtime.settings.data_dir.parent / "added", engine_ca=engine.ca_file)
    agent.start()
    try:
        hosts = connection.system_service().hosts_service()
        host = hosts.add(types.Host(name="added", address="127.0.0.1", port=agent.port,
                                    cluster=types.Cluster(name="Default")))
        assert host.status == types.HostStatus.INSTALLING
        wait_until(lambda: hosts.host_service(host.id).get().status == types.HostStatus.UP, 60,
                   "the host to come up")
        with pytest.raises(sdk.Error, match="switch it to maintenance first"):
            hosts.host_service(host.id).remove()
        hosts.host_service(host.id).deactivate()
        assert hosts.host_service(host.id).get().status == types.HostStatus.MAINTENANCE
        hosts.host_service(host.id).activate()
        wait_until(lambda: hosts.host_service(host.id).get().status == types.HostStatus.UP, 60,
                   "the host to be up after maintenance")
    finally:
        agent.stop()


def test_adding_a_host_where_no_agent_runs_fails_clearly(
    engine: RunningEngine, connection: sdk.Connection
) -> None:
    hosts = connection.system_service().hosts_service()
    host = hosts.add(types.Host(name="nobody", address="127.0.0.1", port=9,
                                cluster=types.Cluster(name="Default")))
    failed = wait_until(lambda: (h := hosts.host_service(host.id).get()).status ==
                        types.HostStatus.INSTALL_FAILED and h, 120, "the install to fail")
    assert failed.status == types.HostStatus.INSTALL_FAILED
    events = [e.description for e in connection.system_service().events_service().list(max=10)]
    assert any("is `overt node` running there?" in e for e in events)
    hosts.host_service(host.id).remove()
    assert [h.name for h in hosts.list()] == []
