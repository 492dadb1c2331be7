"""Fuzzing the direct transport (HTTPS + mutual TLS): malformed commands of every type to a
node's RPC endpoint, malformed events of every type to the engine's gateway. Each is
refused with a 4xx (never a 5xx), reaches neither the node's handler nor the engine's sink,
and both ends keep serving."""

from __future__ import annotations

import json
import ssl
import uuid
from pathlib import Path

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overt.bus.direct.agent import DirectAgentTransport
from overt.bus.direct.gateway import NodeGateway
from overt.bus.direct.tls import TlsFiles
from overt.protocol import CommandEnvelope, decode_reply
from overt.protocol.commands import HostCapabilitiesCommand
from tests.integration.bus.direct.conftest import (
    HOST_UUID,
    NodeCommands,
    commands,
    enrolled_node,
    gateway,
    gateway_url,
    loop,
    pki,
    sink,
    unenrolled_node,
)
from tests.integration.node.harness import LoopThread, Pki, RecordingSink
from tests.security.malformed import malformed_command, malformed_event

pytestmark = pytest.mark.slow  # hundreds of generated messages

__all__ = ["commands", "enrolled_node", "gateway", "loop", "pki", "sink", "unenrolled_node"]

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def _context(pki: Pki, identity: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cafile=pki.engine.ca_file)
    context.load_cert_chain(identity.cert_file, identity.key_file)
    return context


async def _post(url: str, body: str, context: ssl.SSLContext) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(
            url, data=body, ssl=context) as response:
        return response.status, await response.text()


@FUZZ
@given(message=malformed_command())
def test_fuzz_malformed_commands_to_a_node(loop: LoopThread, pki: Pki,
                                           enrolled_node: DirectAgentTransport,
                                           commands: NodeCommands,
                                           message: tuple[str, str]) -> None:
    _name, body = message
    seen = len(commands.seen)
    status, text = loop.run(_post(f"https://127.0.0.1:{enrolled_node.port}/v1/commands", body,
                                  _context(pki, pki.engine)))
    assert 400 <= status < 500, (status, text[:300])
    reply = decode_reply(text)
    assert not reply.ok and reply.error is not None
    assert len(commands.seen) == seen  # the handler never saw it
    good = CommandEnvelope(command=HostCapabilitiesCommand()).model_dump_json()
    status, _text = loop.run(_post(f"https://127.0.0.1:{enrolled_node.port}/v1/commands", good,
                                   _context(pki, pki.engine)))
    assert status == 200


@pytest.fixture
def node_identity(pki: Pki, gateway: NodeGateway, tmp_path: Path) -> TlsFiles:
    return pki.enroll_node(tmp_path / "node", HOST_UUID, gateway_url(gateway)).files()


@FUZZ
@given(data=st.data())
def test_fuzz_malformed_events_to_the_gateway(loop: LoopThread, pki: Pki, gateway: NodeGateway,
                                              sink: RecordingSink, node_identity: TlsFiles,
                                              data: st.DataObject) -> None:
    node = node_identity
    _kind, event = data.draw(malformed_event(HOST_UUID, uuid.uuid4()))
    body = json.dumps(data.draw(st.sampled_from([[event], event])))
    status, text = loop.run(_post(gateway_url(gateway) + "/v1/events", body,
                                  _context(pki, node)))
    assert 400 <= status < 500, (status, text[:300])
    assert sink.events == []
