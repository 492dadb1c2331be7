"""Enrolling nodes: a node that announces itself waits for approval; one added by address
joins at once. Both end with an engine-issued certificate and the host up."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from overt.system.waiting import tcp_port_answers
from tests.conftest import postgres_database, require_root
from tests.e2e.cli.test_vm_commands import cli
from tests.support.agent import Agent
from tests.support.demo import wait_until
from tests.support.engine import RunningEngine, start_engine

# Real agent processes enroll through the gateway: seconds each.
pytestmark = pytest.mark.slow


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> Iterator[RunningEngine]:
    """An engine; a test marked `install_timeout(S)` gives up installing hosts after S s."""
    require_root()
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-enroll-"))
    base.chmod(0o755)
    marker = request.node.get_closest_marker("install_timeout")
    settings = {"host_install_timeout_s": marker.args[0]} if marker else {}
    with contextlib.ExitStack() as stack:
        # sqlite unless the test is parametrized indirectly with "postgresql"
        db = stack.enter_context(postgres_database()) \
            if getattr(request, "param", "sqlite") == "postgresql" else None
        running = start_engine(base / "engine", db=db, **settings)
        yield running
        running.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def connection(engine: RunningEngine) -> Iterator[sdk.Connection]:
    conn = engine.admin_connection()
    yield conn
    conn.close()


def test_a_node_that_announces_itself_waits_for_approval(
    engine: RunningEngine, connection: sdk.Connection
) -> None:
    agent = Agent(engine.runtime.settings.data_dir.parent / "announcer",
                  engine_url=engine.gateway_url, engine_ca=engine.ca_file)
    agent.start()
    try:
        hosts = connection.system_service().hosts_service()
        pending = wait_until(lambda: next(iter(hosts.list()), None), 60, "the node to announce")
        assert pending.status == types.HostStatus.PENDING_APPROVAL
        assert pending.address == "127.0.0.1"
        assert pending.ssh.fingerprint == agent.key_fingerprint()  # what the admin compares
        events = connection.system_service().events_service().list(max=5)
        assert any("asks to join with key" in e.description for e in events)
        hosts.host_service(pending.id).approve()
        up = wait_until(lambda: (h := hosts.host_service(pending.id).get()).status ==
                        types.HostStatus.UP and h, 60, "the approved host to come up")
        assert up.hardware_information.uuid
        assert up.memory > 0 and up.cpu.topology.sockets >= 1
        assert up.certificate is not None
    finally:
        agent.stop()


def test_a_host_added_by_address_with_its_fingerprint_joins_without_approval(
    engine: RunningEngine, connection: sdk.Connection
) -> None:
    agent = Agent(engine.runtime.settings.data_dir.parent / "added", engine_ca=engine.ca_file)
    agent.start()
    try:
        key = agent.key_fingerprint()
        assert key in agent.log.read_text() or wait_until(
            lambda: key in agent.log.read_text(), 30, "the node to log its key")
        hosts = connection.system_service().hosts_service()
        host = hosts.add(types.Host(name="added", address="127.0.0.1", port=agent.port,
                                    ssh=types.Ssh(fingerprint=key),
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


@pytest.mark.install_timeout(3)
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


@pytest.mark.install_timeout(3)
@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)],
                         indirect=True)
def test_a_host_whose_install_failed_is_installed_again_once_its_agent_runs(
    engine: RunningEngine, connection: sdk.Connection
) -> None:
    agent = Agent(engine.runtime.settings.data_dir.parent / "late", engine_ca=engine.ca_file)
    hosts = connection.system_service().hosts_service()
    host = hosts.add(types.Host(name="late", address="127.0.0.1", port=agent.port,
                                cluster=types.Cluster(name="Default"),
                                ssh=types.Ssh(fingerprint=agent.make_key())))
    host_service = hosts.host_service(host.id)
    failed = wait_until(lambda: (h := host_service.get()).status ==
                        types.HostStatus.INSTALL_FAILED and h, 60, "the install to fail")
    assert "cannot reach the Overt agent" in failed.status_detail
    agent.start()
    try:
        # The administrator fixes the agent first (this engine gives up after 3 s).
        wait_until(lambda: tcp_port_answers("127.0.0.1", agent.port), 120, "the agent to listen")
        host_service.install()
        assert host_service.get().status in (types.HostStatus.INSTALLING,
                                             types.HostStatus.CONNECTING, types.HostStatus.UP)
        up = wait_until(lambda: (h := host_service.get()).status == types.HostStatus.UP and h,
                        120, "the installed host to come up")
        assert up.certificate is not None and up.hardware_information.uuid
        events = [e.description for e in connection.system_service().events_service().list(
            max=20)]
        assert "Host late is being installed by admin@internal" in events
        with pytest.raises(sdk.Error, match="Cannot install host late: it is up"):
            host_service.install()
    finally:
        agent.stop()


@pytest.mark.install_timeout(3)
def test_overt_host_install_brings_up_a_host_whose_install_failed(
    engine: RunningEngine, connection: sdk.Connection
) -> None:
    agent = Agent(engine.runtime.settings.data_dir.parent / "cli", engine_ca=engine.ca_file)
    hosts = connection.system_service().hosts_service()
    host = hosts.add(types.Host(name="by-cli", address="127.0.0.1", port=agent.port,
                                cluster=types.Cluster(name="Default"),
                                ssh=types.Ssh(fingerprint=agent.make_key())))
    wait_until(lambda: hosts.host_service(host.id).get().status ==
               types.HostStatus.INSTALL_FAILED, 60, "the install to fail")
    agent.start()
    try:
        wait_until(lambda: tcp_port_answers("127.0.0.1", agent.port), 120, "the agent to listen")
        installed = cli(engine, "host", "install", "by-cli")
        assert installed.returncode == 0, installed.stderr
        assert "host by-cli is up" in installed.stdout
        assert hosts.host_service(host.id).get().status == types.HostStatus.UP
        again = cli(engine, "host", "install", "by-cli")
        assert again.returncode == 1
        assert "Cannot install host by-cli: it is up" in again.stderr
        assert "Traceback" not in again.stderr
    finally:
        agent.stop()
