"""The engine calls a node's RPC server: mutual TLS, identities, malformed requests."""

from __future__ import annotations

import json
import ssl
import uuid
from pathlib import Path

import aiohttp
import pytest

from overt.bus.base import CommandTimedOut, NodeAddress, NodeUnreachable, TransportError
from overt.bus.direct.agent import DirectAgentTransport
from overt.bus.direct.engine import DirectEngineTransport
from overt.bus.direct.tls import TlsFiles
from overt.pki.certs import CertificateAuthority
from overt.protocol import CommandEnvelope, ErrorCode, decode_reply
from overt.protocol.commands import VmStatus
from overt.protocol.host import VmStatusReport
from tests.integration.bus.direct.conftest import HOST_UUID, NodeCommands
from tests.integration.node.harness import LoopThread, Pki, free_port

VM_ID = uuid.uuid4()


def _node(transport: DirectAgentTransport, host_uuid: uuid.UUID = HOST_UUID) -> NodeAddress:
    return NodeAddress(host_uuid=host_uuid, url=f"https://127.0.0.1:{transport.port}")


def _call(loop: LoopThread, tls: TlsFiles, node: NodeAddress, envelope: CommandEnvelope,
          **kwargs: float) -> object:
    async def scenario() -> object:
        engine = DirectEngineTransport(tls, **kwargs)
        await engine.start(None)
        try:
            return await engine.call(node, envelope)
        finally:
            await engine.close()
    return loop.run(scenario())


async def _post(url: str, body: bytes, context: ssl.SSLContext) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(
            url, data=body, ssl=context) as response:
        return response.status, await response.text()


def _client_context(ca_file: Path, identity: TlsFiles | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=ca_file)
    if identity is not None:
        ctx.load_cert_chain(identity.cert_file, identity.key_file)
    return ctx


def test_the_engine_calls_a_node_and_gets_its_reply(
        loop: LoopThread, pki: Pki, enrolled_node: DirectAgentTransport,
        commands: NodeCommands) -> None:
    envelope = CommandEnvelope(idempotency_key="job-7", command=VmStatus(vm_id=VM_ID))
    reply = _call(loop, pki.engine, _node(enrolled_node), envelope)
    assert reply.ok and reply.request_id == envelope.request_id  # type: ignore[attr-defined]
    assert VmStatusReport.model_validate(reply.result).vm_id == VM_ID  # type: ignore[attr-defined]
    assert commands.seen[-1].idempotency_key == "job-7"


def test_the_engine_refuses_a_node_with_another_identity(
        loop: LoopThread, pki: Pki, enrolled_node: DirectAgentTransport,
        commands: NodeCommands) -> None:
    before = len(commands.seen)
    with pytest.raises(TransportError, match="is host"):
        _call(loop, pki.engine, _node(enrolled_node, uuid.uuid4()),
              CommandEnvelope(command=VmStatus(vm_id=VM_ID)))
    assert len(commands.seen) == before  # the node refused it before acting


def test_a_node_of_another_ca_is_not_trusted(
        loop: LoopThread, enrolled_node: DirectAgentTransport, tmp_path: Path) -> None:
    stranger = Pki(tmp_path / "other")
    with pytest.raises(TransportError, match="certificate"):
        _call(loop, stranger.engine, _node(enrolled_node),
              CommandEnvelope(command=VmStatus(vm_id=VM_ID)))


def test_a_client_without_certificate_is_refused(
        loop: LoopThread, pki: Pki, enrolled_node: DirectAgentTransport) -> None:
    body = CommandEnvelope(command=VmStatus(vm_id=VM_ID)).model_dump_json().encode()
    context = _client_context(pki.engine.ca_file, None)
    with pytest.raises(aiohttp.ClientError):
        loop.run(_post(f"https://127.0.0.1:{enrolled_node.port}/v1/commands", body, context))


def test_a_client_certificate_of_another_ca_is_refused(
        loop: LoopThread, pki: Pki, enrolled_node: DirectAgentTransport, tmp_path: Path) -> None:
    forged = pki.other_identity(tmp_path / "forged", "engine",
                                ca=CertificateAuthority.create("evil"))
    body = CommandEnvelope(command=VmStatus(vm_id=VM_ID)).model_dump_json().encode()
    context = _client_context(pki.engine.ca_file, forged)
    with pytest.raises(aiohttp.ClientError):
        loop.run(_post(f"https://127.0.0.1:{enrolled_node.port}/v1/commands", body, context))


def test_a_node_certificate_may_not_send_commands(
        loop: LoopThread, pki: Pki, enrolled_node: DirectAgentTransport, tmp_path: Path,
        commands: NodeCommands) -> None:
    other_node = pki.other_identity(tmp_path / "node2", str(uuid.uuid4()))
    body = CommandEnvelope(command=VmStatus(vm_id=VM_ID)).model_dump_json().encode()
    status, text = loop.run(_post(f"https://127.0.0.1:{enrolled_node.port}/v1/commands", body,
                                  _client_context(pki.engine.ca_file, other_node)))
    assert status == 403
    reply = decode_reply(text)
    assert reply.error is not None and reply.error.code is ErrorCode.UNAUTHORIZED
    assert not any(isinstance(c.command, VmStatus) for c in commands.seen)


@pytest.mark.parametrize(("body", "code", "words"), [
    (b"{not json", ErrorCode.BAD_REQUEST, "not JSON"),
    (json.dumps({"command": {"name": "vm.explode"}}).encode(), ErrorCode.BAD_REQUEST,
     "malformed command"),
    (json.dumps({"version": 42, "command": {"name": "vm.status", "vm_id": str(VM_ID)}}).encode(),
     ErrorCode.UNSUPPORTED_VERSION, "version 42"),
], ids=["not-json", "unknown-command", "unsupported-version"])  # not the random VM id
def test_malformed_commands_are_refused_with_a_clear_error(
        loop: LoopThread, pki: Pki, enrolled_node: DirectAgentTransport, commands: NodeCommands,
        body: bytes, code: ErrorCode, words: str) -> None:
    status, text = loop.run(_post(f"https://127.0.0.1:{enrolled_node.port}/v1/commands", body,
                                  _client_context(pki.engine.ca_file, pki.engine)))
    assert status == 400
    reply = decode_reply(text)
    assert not reply.ok and reply.error is not None
    assert reply.error.code is code and words in reply.error.message
    assert not any(isinstance(c.command, VmStatus) for c in commands.seen)


def test_a_node_that_does_not_answer_in_time_is_a_timeout(
        loop: LoopThread, pki: Pki, enrolled_node: DirectAgentTransport,
        commands: NodeCommands) -> None:
    # Twice the call's whole wait (the teardown waits out the rest of the answer).
    commands.delay_s = 2.0
    with pytest.raises(CommandTimedOut, match="may still act"):
        _call(loop, pki.engine, _node(enrolled_node),
              CommandEnvelope(timeout_s=0.5, command=VmStatus(vm_id=VM_ID)),
              timeout_margin_s=0.5)


def test_a_node_that_is_down_is_unreachable(loop: LoopThread, pki: Pki) -> None:
    node = NodeAddress(host_uuid=HOST_UUID, url=f"https://127.0.0.1:{free_port()}")
    with pytest.raises(NodeUnreachable, match="cannot reach node") as caught:
        _call(loop, pki.engine, node, CommandEnvelope(command=VmStatus(vm_id=VM_ID)))
    assert str(caught.value).endswith(": connection refused")  # not aiohttp's TLS repr
