"""A node gets its certificate: added by address (enrollment endpoints) or by announcing itself."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from overt.bus.base import NodeAddress, TransportError
from overt.bus.direct.agent import AgentServerSettings, DirectAgentTransport
from overt.bus.direct.engine import DirectEngineTransport
from overt.bus.direct.gateway import NodeGateway
from overt.node.identity import NodeIdentity
from overt.pki.certs import cert_pem, fingerprint
from overt.protocol import CommandEnvelope, ErrorCode
from overt.protocol.commands import VmStatus
from overt.protocol.enrollment import (
    EngineIntroduction,
    EnrollmentGrant,
    EnrollmentRequest,
    EnrollmentStatus,
)
from tests.integration.bus.direct.conftest import HOST_UUID, NodeCommands, gateway_url
from tests.integration.node.harness import LoopThread, Pki, RecordingSink


def _grant(pki: Pki, request: EnrollmentRequest, gateway: NodeGateway) -> EnrollmentGrant:
    cert = pki.ca.sign(request.csr_pem.encode())
    return EnrollmentGrant(status=EnrollmentStatus.APPROVED, host_id=uuid.uuid4(),
                           certificate_pem=cert_pem(cert).decode(),
                           ca_pem=cert_pem(pki.ca.cert).decode(),
                           gateway_url=gateway_url(gateway))


def test_an_engine_adds_a_node_by_address(
        loop: LoopThread, pki: Pki, gateway: NodeGateway, unenrolled_node: DirectAgentTransport,
        sink: RecordingSink) -> None:
    url = f"https://127.0.0.1:{unenrolled_node.port}"
    node = NodeAddress(host_uuid=HOST_UUID, url=url)
    intro = EngineIntroduction(ca_pem=cert_pem(pki.ca.cert).decode(),
                               gateway_url=gateway_url(gateway), host_id=uuid.uuid4())

    async def scenario() -> tuple[str, bool, ErrorCode | None]:
        engine = DirectEngineTransport(pki.engine)
        await engine.start(None)
        try:
            refused = await engine.call(node, CommandEnvelope(command=VmStatus(vm_id=uuid.uuid4())))
        except TransportError:
            refused_code = None
        else:
            refused_code = refused.error.code if refused.error else None
        try:
            request, fingerprint = await engine.request_enrollment(url, intro)
            assert request.host_uuid == HOST_UUID and "CERTIFICATE REQUEST" in request.csr_pem
            await engine.send_certificate(url, _grant(pki, request, gateway))
            reply = await engine.call(node, CommandEnvelope(command=VmStatus(vm_id=uuid.uuid4())))
            return fingerprint, reply.ok, refused_code
        finally:
            await engine.close()

    fingerprint, ok, refused_code = loop.run(scenario())
    assert refused_code in (None, ErrorCode.UNAUTHORIZED)  # nothing served before enrollment
    assert len(fingerprint) == 95 and ok
    assert unenrolled_node.enrolled
    loop.run(unenrolled_node.publish(_first_event()))
    sink.wait_for(lambda events: len(events) == 1, what="the first event after enrollment")


def _first_event() -> object:
    from overt.protocol import EventEnvelope
    from overt.protocol.events import Heartbeat

    return EventEnvelope(host_uuid=HOST_UUID, boot_id=uuid.uuid4(), seq=1,
                         event=Heartbeat(vm_count=0, free_memory_mib=1, uptime_s=1))


def test_a_node_pinned_to_another_ca_refuses_a_new_engine(
        loop: LoopThread, pki: Pki, gateway: NodeGateway, unenrolled_node: DirectAgentTransport,
        tmp_path: Path) -> None:
    url = f"https://127.0.0.1:{unenrolled_node.port}"

    async def introduce(who: Pki) -> None:
        engine = DirectEngineTransport(who.engine)
        await engine.start(None)
        try:
            await engine.request_enrollment(url, EngineIntroduction(
                ca_pem=cert_pem(who.ca.cert).decode(), gateway_url=gateway_url(gateway),
                host_id=uuid.uuid4()))
        finally:
            await engine.close()

    with pytest.raises(TransportError, match="not the one this node was told to trust"):
        loop.run(introduce(Pki(tmp_path / "intruder")))  # before the engine: refused
    loop.run(introduce(pki))  # the CA of the fingerprint: kept
    with pytest.raises(TransportError, match="trusts another engine CA"):
        loop.run(introduce(Pki(tmp_path / "intruder")))


def test_a_node_announces_itself_until_approved(
        loop: LoopThread, pki: Pki, gateway: NodeGateway, commands: NodeCommands,
        sink: RecordingSink, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    asked: list[tuple[EnrollmentRequest, str | None]] = []

    async def decide(request: EnrollmentRequest, peer: str | None) -> EnrollmentGrant:
        asked.append((request, peer))
        if len(asked) < 2:  # an administrator approves it after the first announce
            return EnrollmentGrant(status=EnrollmentStatus.PENDING_APPROVAL)
        return _grant(pki, request, gateway)

    gateway.set_enroll(decide)
    identity = NodeIdentity(tmp_path / "announcing", ca_fingerprint=fingerprint(pki.ca.cert))
    node = DirectAgentTransport(identity, AgentServerSettings(
        listen_address="127.0.0.1", port=0, engine_url=gateway_url(gateway),
        announce_interval_s=0.2))  # port 0: any free port, which the announcement names
    loop.run(node.start(commands))
    try:
        loop.run(node.publish(_first_event()))  # waits until the node knows where to send
        sink.wait_for(lambda events: len(events) == 1, what="events after approval")
        assert len(asked) == 2 and node.enrolled
        assert asked[0][0].host_uuid == HOST_UUID and asked[0][0].capabilities.cpu_cores == 2
        assert asked[0][0].rpc_port == node.port
        assert not [r for r in caplog.records if "cannot enroll" in r.getMessage()]
        assert identity.ca_file.read_bytes() == cert_pem(pki.ca.cert)  # fetched, checked
        assert oct(identity.key_file.stat().st_mode & 0o777) == "0o600"
    finally:
        loop.run(node.close())


def test_a_node_announces_the_hardware_facts_it_reads(
        loop: LoopThread, pki: Pki, commands: NodeCommands, tmp_path: Path) -> None:
    machine = tmp_path / "machine"
    (machine / "proc").mkdir(parents=True)
    (machine / "proc" / "meminfo").write_text("MemTotal:  2048000 kB\n")
    (machine / "proc" / "cmdline").write_text("overt.boot_mac=52:54:00:12:34:56\n")
    identity = NodeIdentity(tmp_path / "fresh", ca_fingerprint=fingerprint(pki.ca.cert))
    transport = DirectAgentTransport(identity, AgentServerSettings(
        listen_address="127.0.0.1", port=0, hardware_root=machine))
    loop.run(transport.start(commands))
    try:
        facts = transport.enrollment_request().hardware
    finally:
        loop.run(transport.close())
    assert facts is not None
    assert (facts.memory_bytes, facts.boot_mac) == (2048000 * 1024, "52:54:00:12:34:56")
    simulated = DirectAgentTransport(identity, AgentServerSettings(listen_address="127.0.0.1",
                                                                   port=0))
    loop.run(simulated.start(commands))
    try:
        assert simulated.enrollment_request().hardware is None  # no machine of its own
    finally:
        loop.run(simulated.close())
