"""A node delivers its events to the engine gateway: in order, acknowledged after the sink."""

from __future__ import annotations

import ssl
import uuid
from pathlib import Path

import aiohttp

from overt.bus.direct.agent import DirectAgentTransport
from overt.bus.direct.gateway import NodeGateway
from overt.protocol import EventEnvelope
from overt.protocol.events import Heartbeat, StatsSample
from overt.protocol.host import HostStats
from tests.integration.bus.direct.conftest import HOST_UUID, gateway_url
from tests.integration.node.harness import LoopThread, Pki, RecordingSink
from tests.support.demo import wait_until

BOOT = uuid.uuid4()


def _heartbeat(seq: int, host: uuid.UUID = HOST_UUID) -> EventEnvelope:
    return EventEnvelope(host_uuid=host, boot_id=BOOT, seq=seq,
                         event=Heartbeat(vm_count=seq, free_memory_mib=1, uptime_s=seq))


def _stats() -> EventEnvelope:
    return EventEnvelope(host_uuid=HOST_UUID, boot_id=BOOT, event=StatsSample(
        interval_s=1, host=HostStats(cpu_percent=1, memory_total_mib=2, memory_used_mib=1,
                                     memory_free_mib=1)))


def _seqs(sink: RecordingSink) -> list[int | None]:
    return [e.seq for e in sink.events if e.seq is not None]


def test_events_arrive_in_order(loop: LoopThread, enrolled_node: DirectAgentTransport,
                                sink: RecordingSink) -> None:
    async def publish() -> None:
        for seq in range(1, 251):
            await enrolled_node.publish(_heartbeat(seq))
    loop.run(publish())
    sink.wait_for(lambda events: len(events) >= 250, what="250 events")
    assert _seqs(sink) == list(range(1, 251))


def test_the_gateway_acknowledges_only_what_the_sink_recorded(
        loop: LoopThread, enrolled_node: DirectAgentTransport, sink: RecordingSink) -> None:
    sink.fail_next = 2  # the engine's database hiccups twice
    async def publish() -> None:
        for seq in range(1, 6):
            await enrolled_node.publish(_heartbeat(seq))
    loop.run(publish())
    sink.wait_for(lambda events: len(events) >= 5, what="5 events after retries")
    assert _seqs(sink) == [1, 2, 3, 4, 5]
    assert sink.fail_next == 0
    # The node counts an event delivered when the gateway's answer reaches it, a moment
    # after the sink has recorded it.
    wait_until(lambda: enrolled_node.delivery.pending == 0, 10,
               "the node to take the gateway's acknowledgements", every=0.02)


def test_events_wait_while_the_gateway_is_down(
        loop: LoopThread, pki: Pki, enrolled_node: DirectAgentTransport, gateway: NodeGateway,
        sink: RecordingSink) -> None:
    loop.run(gateway.stop())
    async def publish() -> None:
        for seq in range(1, 4):
            await enrolled_node.publish(_heartbeat(seq))
        await enrolled_node.publish_lossy(_stats())  # dropped: nothing to send it to
    loop.run(publish())
    replacement = NodeGateway(pki.engine, host="127.0.0.1", port=gateway.port or 0, sink=sink)
    loop.run(replacement.start())
    try:
        sink.wait_for(lambda events: len(events) >= 3, what="events after the gateway is back")
        assert _seqs(sink) == [1, 2, 3]
        assert all(e.event.type != "stats" for e in sink.events)
    finally:
        loop.run(replacement.stop())


def test_stats_go_through_the_lossy_path(loop: LoopThread, enrolled_node: DirectAgentTransport,
                                         sink: RecordingSink) -> None:
    loop.run(enrolled_node.publish_lossy(_stats()))
    events = sink.wait_for(lambda events: len(events) >= 1, what="a stats sample")
    assert events[0].seq is None and events[0].event.type == "stats"


async def _post_events(url: str, body: str, context: ssl.SSLContext) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(
            url + "/v1/events", data=body, ssl=context) as response:
        return response.status, await response.text()


def _context(pki: Pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=pki.engine.ca_file)
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


def test_the_gateway_refuses_events_without_a_node_certificate(
        loop: LoopThread, pki: Pki, gateway: NodeGateway, sink: RecordingSink) -> None:
    body = "[" + _heartbeat(1).model_dump_json() + "]"
    status, text = loop.run(_post_events(gateway_url(gateway), body, _context(pki)))
    assert status == 403 and "certificate" in text
    assert sink.events == []


def test_a_node_may_not_send_another_hosts_events(
        loop: LoopThread, pki: Pki, gateway: NodeGateway, sink: RecordingSink,
        tmp_path: Path) -> None:
    node = pki.enroll_node(tmp_path / "n", HOST_UUID, gateway_url(gateway)).files()
    body = "[" + _heartbeat(1, host=uuid.uuid4()).model_dump_json() + "]"
    status, text = loop.run(_post_events(gateway_url(gateway), body,
                                         _context(pki, node.cert_file, node.key_file)))
    assert status == 403 and "may not send events" in text
    assert sink.events == []


def test_the_gateway_refuses_malformed_events(
        loop: LoopThread, pki: Pki, gateway: NodeGateway, sink: RecordingSink,
        tmp_path: Path) -> None:
    node = pki.enroll_node(tmp_path / "n", HOST_UUID, gateway_url(gateway)).files()
    for body in ("nonsense", '[{"version": 1, "event": {"type": "vm.exploded"}}]'):
        status, _text = loop.run(_post_events(gateway_url(gateway), body,
                                              _context(pki, node.cert_file, node.key_file)))
        assert status == 400
    assert sink.events == []
