"""Power management through the official SDK: fence agents, and fencing with the real
`fence_ipmilan` against a virtual BMC (`overt.lab.bmc`) on loopback whose power is a real
process; the BMC password never comes back from the API nor reaches the engine's log or its
database in clear."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from tests.e2e.engine.conftest import engine_data
from tests.support.engine import RunningEngine

# The real fence agent and an IPMI server per test: seconds per call, so not in the fast lane.
pytestmark = pytest.mark.slow

BMC_PASSWORD = "Bmc-s3cret-Pw-7731"


@dataclass
class Bmc:
    port: int
    proc: subprocess.Popen[bytes]

    def powered(self) -> bool:
        """Is the process the BMC powers (its only child) running, seen from outside?"""
        found = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                               check=False)
        return found.returncode == 0


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def bmc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bmc]:
    if shutil.which("fence_ipmilan", path="/usr/sbin:/sbin:" + os.environ.get("PATH", "")) is None:
        pytest.fail("fence_ipmilan is missing: install the Debian package fence-agents "
                    "(scripts/setup does)")
    work = tmp_path_factory.mktemp("bmc")
    (work / "pw").write_text(BMC_PASSWORD)
    port = _free_udp_port()
    with (work / "bmc.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "overt.lab.bmc", "--port", str(port), "--password-file",
             str(work / "pw"), "--", "sleep", "100000"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    found = Bmc(port, proc)
    deadline = time.monotonic() + 30
    while "listening" not in (work / "bmc.log").read_text() and time.monotonic() < deadline:
        assert proc.poll() is None, (work / "bmc.log").read_text()
        time.sleep(0.1)
    yield found
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def engine_log(api_engine: RunningEngine, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Path]:
    """Everything the engine logs (DEBUG and up) while these tests run."""
    path = tmp_path_factory.mktemp("log") / "engine.log"
    handler = logging.FileHandler(path)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield path
    root.removeHandler(handler)
    root.setLevel(level)
    handler.close()


@pytest.fixture
def host(connection: sdk.Connection) -> Iterator[types.Host]:
    hosts = connection.system_service().hosts_service()
    made = hosts.add(types.Host(name="fenced", address="192.0.2.77", port=9,
                                cluster=types.Cluster(name="Default")))
    yield made
    with contextlib.suppress(sdk.Error):
        hosts.host_service(made.id).remove(force=True)


def _agent(bmc: Bmc, password: str = BMC_PASSWORD) -> types.Agent:
    return types.Agent(type="ipmilan", address="127.0.0.1", port=bmc.port, username="admin",
                       password=password, order=1)


def test_fence_through_the_real_agent(connection: sdk.Connection, api_engine: RunningEngine,
                                      engine_log: Path, bmc: Bmc, host: types.Host) -> None:
    service = connection.system_service().hosts_service().host_service(host.id)
    agents = service.fence_agents_service()
    added = agents.add(_agent(bmc))
    assert (added.address, added.port, added.username, added.type) == (
        "127.0.0.1", bmc.port, "admin", "ipmilan")
    assert added.password is None
    [listed] = agents.list()
    assert listed.id == added.id and listed.password is None

    # Not enabled yet: refused, and the BMC is untouched.
    with pytest.raises(sdk.Error) as refused:
        service.fence(fence_type="stop")
    assert refused.value.code == 409
    assert "power management is not configured" in str(refused.value)
    assert bmc.powered()

    service.update(types.Host(power_management=types.PowerManagement(enabled=True)))
    assert service.get().power_management.enabled is True

    assert service.fence(fence_type="status").status == types.PowerManagementStatus.ON
    assert service.fence(fence_type="stop").status == types.PowerManagementStatus.OFF
    assert not bmc.powered()
    assert service.fence(fence_type="status").status == types.PowerManagementStatus.OFF
    assert service.fence(fence_type="start").status == types.PowerManagementStatus.ON
    assert bmc.powered()
    assert service.fence(fence_type="restart").status == types.PowerManagementStatus.ON
    assert bmc.powered()

    # The job of a fence, with its steps (the action, then the status).
    jobs = connection.system_service().jobs_service()
    stop_job = next(j for j in jobs.list() if j.description == "Power management stop of host fenced")
    assert stop_job.status == types.JobStatus.FINISHED
    steps = [s.description for s in jobs.job_service(stop_job.id).steps_service().list()]
    assert steps == ["Power management stop of host fenced through ipmilan at 127.0.0.1",
                     "Power status of host fenced through ipmilan at 127.0.0.1"]

    # The password: never in an answer (XML and JSON), the log, or the database in clear.
    with httpx.Client(verify=ssl.create_default_context(cafile=api_engine.ca_file),
                      auth=("admin@internal", api_engine.password)) as http:
        for accept in ("application/xml", "application/json"):
            for path in (f"hosts/{host.id}/fenceagents",
                         f"hosts/{host.id}/fenceagents/{added.id}", f"hosts/{host.id}"):
                answer = http.get(f"{api_engine.url}/{path}", headers={"Accept": accept})
                assert answer.status_code == 200
                assert "127.0.0.1" in answer.text or "fenced" in answer.text
                assert BMC_PASSWORD not in answer.text
    text = engine_log.read_text()
    assert "fence_ipmilan status at 127.0.0.1" in text  # the log did see the fences
    assert BMC_PASSWORD not in text
    database = engine_data(api_engine) / "engine.db"
    if database.exists():  # the SQLite variant: the whole file, journal included
        assert BMC_PASSWORD.encode() not in database.read_bytes()
    assert (engine_data(api_engine) / "secrets.key").stat().st_mode & 0o077 == 0


def test_wrong_bmc_password_fails_the_job_and_changes_nothing(
        connection: sdk.Connection, engine_log: Path, bmc: Bmc, host: types.Host) -> None:
    service = connection.system_service().hosts_service().host_service(host.id)
    wrong = "Not-the-Bmc-Pw-42"
    agent = service.fence_agents_service().add(_agent(bmc, password=wrong))
    service.update(types.Host(power_management=types.PowerManagement(enabled=True)))
    with pytest.raises(sdk.Error) as failed:
        service.fence(fence_type="stop")
    assert failed.value.code == 409
    assert "Cannot stop host fenced" in str(failed.value)
    assert "fence_ipmilan" in str(failed.value)
    assert wrong not in str(failed.value)
    assert bmc.powered()  # nothing changed
    jobs = connection.system_service().jobs_service().list()
    job = next(j for j in jobs if j.description == "Power management stop of host fenced"
               and j.status == types.JobStatus.FAILED)
    assert job.status == types.JobStatus.FAILED
    assert wrong not in engine_log.read_text()

    # With the right password (the SDK's agent update) the same fence works.
    service.fence_agents_service().agent_service(agent.id).update(
        types.Agent(password=BMC_PASSWORD))
    assert service.fence(fence_type="status").status == types.PowerManagementStatus.ON


def test_bad_input_is_refused(connection: sdk.Connection, bmc: Bmc, host: types.Host) -> None:
    service = connection.system_service().hosts_service().host_service(host.id)
    agents = service.fence_agents_service()

    with pytest.raises(sdk.Error) as no_agent:
        service.fence(fence_type="status")
    assert no_agent.value.code == 409 and "has no fence agent" in str(no_agent.value)

    agents.add(_agent(bmc))
    service.update(types.Host(power_management=types.PowerManagement(enabled=True)))
    with pytest.raises(sdk.Error) as bad_type:
        service.fence(fence_type="explode")
    assert bad_type.value.code == 400 and "fence_type must be one of" in str(bad_type.value)

    refused = [
        (types.Agent(type="apc", address="127.0.0.1", username="a", password="p"),
         "agent.type 'apc' is not supported"),
        (types.Agent(type="ipmilan", address="127.0.0.1", username="a", password="p",
                     options=[types.Option(name="password_script", value="/bin/id")]),
         "password_script are not allowed"),
        (types.Agent(type="ipmilan", address="127.0.0.1", username="a", password="p\naction=off"),
         "agent.password must be one line"),
    ]
    for agent, reason in refused:
        with pytest.raises(sdk.Error) as fault:
            agents.add(agent)
        assert fault.value.code == 400 and reason in str(fault.value)
    assert len(agents.list()) == 1  # nothing was added

    with pytest.raises(sdk.Error) as renamed:
        service.update(types.Host(name="other"))
    assert renamed.value.code == 400 and "host name cannot be updated" in str(renamed.value)
    assert service.get().name == "fenced"
    assert bmc.powered()


def test_fence_from_the_cli(connection: sdk.Connection, api_engine: RunningEngine, bmc: Bmc,
                            host: types.Host) -> None:
    """`overt host fence HOST TYPE`: the power status it prints, the fault when refused."""
    env = {**os.environ, "OVERT_URL": api_engine.url, "OVERT_PASSWORD": api_engine.password,
           "OVERT_CA_FILE": str(api_engine.ca_file), "COLUMNS": "300"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "overt", "host", "fence", *args],
                              capture_output=True, text=True, env=env, timeout=300, check=False)

    refused = cli("fenced", "stop")
    assert refused.returncode != 0
    assert "power management is not configured" in refused.stdout + refused.stderr
    service = connection.system_service().hosts_service().host_service(host.id)
    service.fence_agents_service().add(_agent(bmc))
    service.update(types.Host(power_management=types.PowerManagement(enabled=True)))
    stopped = cli("fenced", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "host fenced: stop done, power off" in stopped.stdout
    assert not bmc.powered()
    started = cli("fenced", "start")
    assert "host fenced: start done, power on" in started.stdout, started.stderr
    assert bmc.powered()
    bad = cli("fenced", "explode")
    assert bad.returncode != 0 and "must be one of" in bad.stdout + bad.stderr
