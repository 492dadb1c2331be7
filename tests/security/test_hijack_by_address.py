"""Finding: a host added by address could be taken over. The engine matched an `installing`
host on the address a request declares itself, and its own enrollment connection to the
node took whatever key answered at that address."""

from __future__ import annotations

import tempfile
from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types

from overt.bus.direct.agent import AgentServerSettings, DirectAgentTransport
from overt.node.identity import NodeIdentity
from overt.protocol.enrollment import EnrollmentStatus
from tests.integration.bus.direct.conftest import NodeCommands
from tests.integration.node.harness import LoopThread, free_port
from tests.security.conftest import FakeNode, close_loop
from tests.support.demo import wait_until
from tests.support.engine import RunningEngine


def test_hijack_by_address_announce(engine: RunningEngine, connection: sdk.Connection) -> None:
    hosts = connection.system_service().hosts_service()
    added = hosts.add(types.Host(name="far", address="127.0.0.1", port=9,
                                 cluster=types.Cluster(name="Default")))
    attacker = FakeNode(address="127.0.0.1")  # says it is at the added host's address
    grant = attacker.announce(engine)
    assert grant.status is not EnrollmentStatus.APPROVED, "a self-declared address was granted"
    assert grant.certificate_pem is None
    host = hosts.host_service(added.id).get()
    assert host.hardware_information is None and host.certificate is None


def test_hijack_by_address_impostor_node(engine: RunningEngine,
                                         connection: sdk.Connection) -> None:
    """Whoever answers at the address (here: a node of the attacker's, which knows the
    engine's public CA) is not certified unless the administrator confirmed its key or it
    proves it holds the host's one-time token."""
    loop = LoopThread()
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-impostor-"))
    impostor = DirectAgentTransport(NodeIdentity(base, engine.ca_file), AgentServerSettings(
        listen_address="127.0.0.1", port=free_port()))
    loop.run(impostor.start(NodeCommands()))
    try:
        hosts = connection.system_service().hosts_service()
        added = hosts.add(types.Host(name="victim", address="127.0.0.1", port=impostor.port,
                                     cluster=types.Cluster(name="Default")))
        failed = wait_until(lambda: (h := hosts.host_service(added.id).get()).status in (
            types.HostStatus.INSTALL_FAILED, types.HostStatus.UP,
            types.HostStatus.CONNECTING) and h, 60, "the install job to decide")
        assert failed.status == types.HostStatus.INSTALL_FAILED, "the impostor was enrolled"
        assert failed.certificate is None and not impostor.enrolled
        events = [e.description for e in connection.system_service().events_service().list(
            max=10)]
        assert any("did not confirm" in e for e in events)
    finally:
        loop.run(impostor.close())
        close_loop(loop)
