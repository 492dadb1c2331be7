"""Several monitor processes share the events queue, and losing one loses nothing.

The sink here does in memory what the engine's monitor does in PostgreSQL: it
applies a node's events in sequence order, each once, under a lock (the row
lock), and refuses an event whose predecessor is not applied yet; the transport
gives a refused event to the sink again a moment later.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from overt.bus.amqp.delivery import HAND_BACK_AFTER
from overt.bus.amqp.engine import AmqpEngineTransport
from overt.bus.amqp.link import Backoff
from overt.bus.base import EventSink
from overt.protocol import EventEnvelope
from tests.integration.bus.amqp.conftest import NodeStarter
from tests.integration.bus.contract.harness import (
    RecordingSink,
    eventually,
    first_seen,
    heartbeat,
)
from tests.integration.bus.contract.transports import TEST_BACKOFF
from tests.support.broker import Broker

pytestmark = [pytest.mark.amqp, pytest.mark.asyncio]


class EventTooEarly(RuntimeError):
    """The previous event of the node is not applied yet."""


class OrderingSink:
    def __init__(self) -> None:
        self.last: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
        self.applied: list[tuple[uuid.UUID, int, str]] = []  # (host, seq, monitor)
        self._row_lock = asyncio.Lock()

    def of(self, monitor: str) -> EventSink:
        async def apply(event: EventEnvelope) -> None:
            assert event.seq is not None
            async with self._row_lock:
                key = (event.host_uuid, event.boot_id)
                last = self.last.get(key, 0)
                if event.seq <= last:
                    return  # applied already: a redelivery
                if event.seq > last + 1:
                    raise EventTooEarly(f"event {last + 1} is not applied yet")
                await asyncio.sleep(0.001)  # the commit
                self.last[key] = event.seq
                self.applied.append((event.host_uuid, event.seq, monitor))
        return apply

    def seqs(self, host_uuid: uuid.UUID) -> list[int]:
        return [seq for host, seq, _monitor in self.applied if host == host_uuid]


async def test_competing_monitors_apply_every_event_once_in_order_even_when_one_dies(
        rabbitmq: Broker, start_node: NodeStarter) -> None:
    sink, count = OrderingSink(), 150
    engine_url = await rabbitmq.engine_url()
    monitors = {name: AmqpEngineTransport(engine_url, backoff=TEST_BACKOFF, prefetch=20,
                                          sink_retry=Backoff(initial=0.02, maximum=0.2))
                for name in ("first", "second")}
    for name, monitor in monitors.items():
        await monitor.start(sink.of(name))
    try:
        nodes = [await start_node() for _ in range(4)]
        boot = uuid.uuid4()

        async def send(node_index: int) -> None:
            node = nodes[node_index]
            for seq in range(1, count + 1):
                await node.agent.publish(heartbeat(node.host_uuid, boot, seq))
                await asyncio.sleep(0.002)

        senders = [asyncio.create_task(send(i)) for i in range(len(nodes))]
        await eventually(lambda: len(sink.applied) >= count, what="a first share of events")
        await monitors["first"].close(grace=0)  # dies with events in hand
        await asyncio.gather(*senders)
        await eventually(lambda: len(sink.applied) == count * len(nodes), within=60,
                         what="every event applied")
    finally:
        for monitor in monitors.values():
            await monitor.close()
    for node in nodes:
        assert sink.seqs(node.host_uuid) == list(range(1, count + 1))
    assert {monitor for _host, _seq, monitor in sink.applied} == {"first", "second"}


async def test_an_event_refused_again_and_again_goes_back_to_the_broker_and_returns_in_order(
        rabbitmq: Broker, start_node: NodeStarter, caplog: pytest.LogCaptureFixture) -> None:
    sink = RecordingSink()
    refusals: list[int] = []

    def refuse_event_3_six_times(event: EventEnvelope) -> bool:
        if event.seq == 3 and len(refusals) < HAND_BACK_AFTER + 1:
            refusals.append(3)
            return True
        return False

    sink.refuse = refuse_event_3_six_times
    monitor = AmqpEngineTransport(await rabbitmq.engine_url(), backoff=TEST_BACKOFF,
                                  sink_retry=Backoff(initial=0.02, maximum=0.1))
    await monitor.start(sink)
    try:
        node = await start_node()
        caplog.set_level(logging.WARNING, logger="overt.bus.amqp")
        boot = uuid.uuid4()
        for seq in range(1, 11):
            await node.agent.publish(heartbeat(node.host_uuid, boot, seq))
        seqs = await sink.wait_for_seqs(node.host_uuid, 10)
    finally:
        await monitor.close()
    assert len(refusals) == HAND_BACK_AFTER + 1
    assert first_seen(seqs) == list(range(1, 11))
    assert f"back to the broker after {HAND_BACK_AFTER} refusals of event 3" in caplog.text
