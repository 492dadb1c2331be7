"""Finding: no pinning or revocation. The engine recorded each host's certificate
fingerprint but never compared it: any certificate of the engine CA naming a host UUID
was accepted for its whole lifetime, an old key's or a removed host's included."""

from __future__ import annotations

import uuid
from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from overt.bus.base import NodeAddress, TransportError
from overt.bus.direct.agent import AgentServerSettings, DirectAgentTransport
from overt.bus.direct.engine import DirectEngineTransport
from overt.pki.certs import cert_pem, fingerprint, load_cert
from overt.protocol import CommandEnvelope
from overt.protocol.commands import VmStatus
from overt.protocol.enrollment import EnrollmentStatus
from tests.integration.bus.direct.conftest import HOST_UUID, NodeCommands
from tests.integration.node.harness import LoopThread, Pki, free_port
from tests.security.conftest import FakeNode, close_loop, post_events
from tests.support.demo import wait_until
from tests.support.engine import RunningEngine


def _enroll(engine: RunningEngine, connection: sdk.Connection, node: FakeNode) -> str:
    node.announce(engine)
    hosts = connection.system_service().hosts_service()
    pending = next(h for h in hosts.list() if h.status == types.HostStatus.PENDING_APPROVAL)
    hosts.host_service(pending.id).approve()
    grant = node.announce(engine)
    assert grant.status is EnrollmentStatus.APPROVED and grant.certificate_pem
    return grant.certificate_pem


def _remove(connection: sdk.Connection, host_uuid: uuid.UUID) -> None:
    hosts = connection.system_service().hosts_service()
    host = next(h for h in hosts.list() if h.hardware_information is not None
                and h.hardware_information.uuid == str(host_uuid))
    hosts.host_service(host.id).remove(force=True)


def test_removed_host_connection(engine: RunningEngine, connection: sdk.Connection,
                                 tmp_path: Path) -> None:
    node = FakeNode()
    cert = _enroll(engine, connection, node)
    assert post_events(engine, tmp_path, node.host_uuid, cert, node.key).status_code == 200
    _remove(connection, node.host_uuid)
    refused = wait_until(lambda: (r := post_events(engine, tmp_path, node.host_uuid, cert,
                                                   node.key)).status_code != 200 and r,
                         10, "the removed host's certificate to be refused")
    assert refused.status_code == 403 and "not its current one" in refused.text


def test_old_key_connection(engine: RunningEngine, connection: sdk.Connection,
                            tmp_path: Path) -> None:
    old = FakeNode()
    old_cert = _enroll(engine, connection, old)
    _remove(connection, old.host_uuid)
    new = FakeNode(host_uuid=old.host_uuid)  # the same host, enrolled again with a new key
    new_cert = _enroll(engine, connection, new)
    assert post_events(engine, tmp_path / "new", new.host_uuid, new_cert,
                       new.key).status_code == 200
    refused = wait_until(lambda: (r := post_events(engine, tmp_path / "old", old.host_uuid,
                                                   old_cert, old.key)).status_code != 200 and r,
                         10, "the old key's certificate to be refused")
    assert refused.status_code == 403


def test_old_key_node_server(tmp_path: Path) -> None:
    """The other direction: the engine calls a node that shows a CA-valid certificate for
    the right host UUID, but not the one the engine pinned for that host."""
    loop = LoopThread()
    pki = Pki(tmp_path / "pki")
    old = pki.enroll_node(tmp_path / "old", HOST_UUID, "https://127.0.0.1:1")
    current = pki.enroll_node(tmp_path / "current", HOST_UUID, "https://127.0.0.1:1")
    pinned = fingerprint(load_cert(current.cert_file.read_bytes()))
    assert pinned != fingerprint(load_cert(old.cert_file.read_bytes()))
    node = DirectAgentTransport(old, AgentServerSettings(listen_address="127.0.0.1",
                                                         port=free_port()))
    loop.run(node.start(NodeCommands()))

    async def call() -> bool:
        engine = DirectEngineTransport(pki.engine)
        await engine.start(None)
        try:
            reply = await engine.call(
                NodeAddress(host_uuid=HOST_UUID, url=f"https://127.0.0.1:{node.port}",
                            certificate_fingerprint=pinned),
                CommandEnvelope(command=VmStatus(vm_id=uuid.uuid4())))
            return reply.ok
        finally:
            await engine.close()

    try:
        with pytest.raises(TransportError, match="not the one the engine issued it last"):
            loop.run(call())
    finally:
        loop.run(node.close())
        close_loop(loop)
    assert cert_pem  # the node's certificates are the CA's: only the pin tells them apart


def test_replayed_enrollment_request(engine: RunningEngine, connection: sdk.Connection,
                                     tmp_path: Path) -> None:
    """A node's certificate request can be captured and sent again (it is signed, not
    fresh): without the node's current certificate in TLS it renews nothing, and the
    node's pin stays where it is."""
    node = FakeNode()
    cert = _enroll(engine, connection, node)
    replayed = node.announce(engine)  # no client certificate: anyone holding the request
    assert replayed.certificate_pem == cert
    assert post_events(engine, tmp_path, node.host_uuid, cert, node.key).status_code == 200
