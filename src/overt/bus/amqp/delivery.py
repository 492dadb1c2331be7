"""Handing node events from the broker to the engine's sink: in order per node, acked once recorded.

Every node has a lane in each monitor process: its events reach the sink one
after the other and each is acknowledged only after the sink returned. A lane
keeps a node's events of one boot in `seq` order, whatever order the broker
delivered them in (a redelivered event goes before its successors). When the
sink raises, the lane gives the same event to the sink again, with backoff,
before any later event of the node; other nodes' lanes go on. After a few
refusals, or when the process stops, the lane hands its events back to the
broker (nack + requeue), so that another monitor, or this one later, takes
them: unacknowledged events never hold the queue's prefetch forever.

Each node's events come from its partition queue, which one monitor consumes at a
time, so a node's events reach one lane in one process. When a partition moves to
another monitor, this one stops taking its events and finishes the lanes of its
nodes first (`finish_partition`). The sink stays the arbiter of order across
crashes and the queue of events left from before partitions, which every monitor
drains: it applies an event only when its predecessor is recorded and raises for
one that comes too early, which the lane retries a moment later (docs/broker.md).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from dataclasses import dataclass, field

from aio_pika.abc import AbstractIncomingMessage

from overt.bus.amqp.link import LINK_ERRORS, Backoff
from overt.bus.amqp.messages import (
    DeadLetterBudget,
    MessageRejected,
    read_event,
    reject,
    settle,
    still_open,
)
from overt.bus.amqp.topology import event_partition
from overt.bus.base import EventSink
from overt.protocol import EventEnvelope

log = logging.getLogger(__name__)

# Refusals of one event before the lane hands its events back to the broker.
HAND_BACK_AFTER = 5


class _Outcome(enum.Enum):
    RECORDED = "recorded"
    GONE = "gone"  # its channel closed: the broker delivers it again
    OVERTAKEN = "overtaken"  # an earlier event of the node arrived meanwhile
    REFUSED = "refused"  # the sink kept raising: hand the lane back


@dataclass
class _Delivery:
    message: AbstractIncomingMessage
    event: EventEnvelope


@dataclass
class _Lane:
    """One node's events in this process, in the order they go to the sink."""

    items: list[_Delivery] = field(default_factory=list)

    def add(self, delivery: _Delivery) -> None:
        """Append, except before any later event of the same boot (a redelivery)."""
        event = delivery.event
        for index, held in enumerate(self.items):
            if held.event.boot_id == event.boot_id and (held.event.seq or 0) > (event.seq or 0):
                self.items.insert(index, delivery)
                return
        self.items.append(delivery)


class EventDelivery:
    """The consumer side of the events and stats queues for one engine process."""

    def __init__(self, sink: EventSink, *, retry: Backoff,
                 budget: DeadLetterBudget | None = None) -> None:
        self._sink = sink
        self._budget = budget or DeadLetterBudget()
        self._retry = retry
        self._lanes: dict[uuid.UUID, _Lane] = {}
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._stopping = False
        # Sequenced events taken from the broker, of them redelivered (a crash, a hand-back,
        # a partition moved with events in hand), and times the sink refused one.
        self.events = 0
        self.redelivered = 0
        self.refused = 0

    async def on_event(self, message: AbstractIncomingMessage) -> None:
        """Consumer callback of the events queue; it must not wait before queueing the event,
        so that lanes receive events in the broker's order."""
        try:
            event = read_event(message.body, user_id=message.user_id,
                               routing_key=message.routing_key, lossy=False)
        except MessageRejected as exc:
            await reject(message, "an event", exc, self._budget)
            return
        self.events += 1
        if message.redelivered:
            self.redelivered += 1
        host = event.host_uuid
        self._lanes.setdefault(host, _Lane()).add(_Delivery(message, event))
        if host not in self._tasks:
            self._tasks[host] = asyncio.create_task(self._drain(host), name=f"events of {host}")

    async def on_stats(self, message: AbstractIncomingMessage) -> None:
        """Consumer callback of the stats queue: one try, acknowledged whatever happens."""
        try:
            event = read_event(message.body, user_id=message.user_id,
                               routing_key=message.routing_key, lossy=True)
        except MessageRejected as exc:
            await reject(message, "a stats", exc, self._budget)
            return
        try:
            await self._sink(event)
        except Exception as exc:
            log.debug("stats sample of node %s not recorded: %s", event.host_uuid, exc)
        await settle(message)

    async def stop(self, grace: float) -> None:
        """Let the sink finish the events it is recording (up to `grace` seconds) and hand
        every other event back to the broker."""
        self._stopping = True
        tasks = list(self._tasks.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def finish_partition(self, partition: int, grace: float) -> None:
        """After its consumer is cancelled: let the lanes of the partition's nodes record
        what they hold (up to `grace` seconds); what is left goes back to the broker when
        the partition's channel closes."""
        tasks = [task for host, task in self._tasks.items() if event_partition(host) == partition]
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _drain(self, host: uuid.UUID) -> None:
        lane = self._lanes[host]
        delays = self._retry.delays()
        try:
            while lane.items and not self._stopping:
                delivery = lane.items[0]
                outcome = await self._record(lane, delivery)
                if outcome is _Outcome.OVERTAKEN:
                    continue
                if outcome is _Outcome.REFUSED:
                    log.warning("handing %d event(s) of node %s back to the broker after %d "
                                "refusals of event %s", len(lane.items), host, HAND_BACK_AFTER,
                                delivery.event.seq)
                    await _hand_back(lane)
                    await asyncio.sleep(next(delays))
                    continue
                if outcome is _Outcome.RECORDED:
                    await settle(delivery.message)
                    delays = self._retry.delays()
                lane.items.remove(delivery)
            await _hand_back(lane)
        finally:
            del self._lanes[host], self._tasks[host]

    async def _record(self, lane: _Lane, delivery: _Delivery) -> _Outcome:
        """Give the event to the sink until it takes it, an earlier event of its node
        overtakes it, its delivery goes away, or the sink refused it too often."""
        event, delays = delivery.event, self._retry.delays()
        for _attempt in range(HAND_BACK_AFTER):
            if not still_open(delivery.message):
                return _Outcome.GONE
            try:
                await self._sink(event)
            except Exception as exc:
                self.refused += 1
                delay = next(delays)
                log.info("event %s of node %s not recorded (%s: %s); giving it to the sink "
                         "again in %.2g s", event.seq, event.host_uuid, type(exc).__name__,
                         exc, delay)
                await asyncio.sleep(delay)
            else:
                return _Outcome.RECORDED
            if lane.items[0] is not delivery:
                return _Outcome.OVERTAKEN
        return _Outcome.REFUSED


async def _hand_back(lane: _Lane) -> None:
    """Requeue the lane's events (in order) for the broker to deliver again."""
    items, lane.items = lane.items, []
    for delivery in items:
        if still_open(delivery.message):
            try:
                await delivery.message.nack(requeue=True)
            except LINK_ERRORS:
                return  # the connection went: the broker requeues them all by itself
