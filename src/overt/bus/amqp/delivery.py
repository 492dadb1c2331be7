"""Handing node events from the broker to the engine's sink: in order per node, acked once recorded.

Every node has a lane: its events reach the sink one after the other, in the
order the broker delivered them, and each is acknowledged only after the sink
returned. When the sink raises, the lane gives that event to the sink again
(with backoff) before any later event of the same node; the event and its
successors stay unacknowledged meanwhile, so if this process dies the broker
redelivers them all, in order, to another monitor. Other nodes' lanes go on.

Why not nack + requeue: requeueing one event puts it back in the shared queue
while its node's later events may still arrive, and a monitor competing for the
same queue may take them first; a node's order would then depend on timing.
What a lane cannot give across several monitor processes (competing consumers
of one queue may hold consecutive events of one node at the same time) the
sink provides: it applies events by (boot_id, seq) and raises for an event
whose predecessor is not recorded yet, which this lane then retries.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque

from aio_pika.abc import AbstractIncomingMessage

from overt.bus.amqp.link import Backoff
from overt.bus.amqp.messages import MessageRejected, read_event, reject, settle, still_open
from overt.bus.base import EventSink
from overt.protocol import EventEnvelope

log = logging.getLogger(__name__)


class EventDelivery:
    """The consumer side of the events and stats queues for one engine process."""

    def __init__(self, sink: EventSink, *, retry: Backoff) -> None:
        self._sink = sink
        self._retry = retry
        self._lanes: dict[uuid.UUID, deque[tuple[AbstractIncomingMessage, EventEnvelope]]] = {}
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}

    async def on_event(self, message: AbstractIncomingMessage) -> None:
        """Consumer callback of the events queue; it must not wait before queueing the event,
        so that lanes receive events in the broker's order."""
        try:
            event = read_event(message.body, user_id=message.user_id,
                               routing_key=message.routing_key, lossy=False)
        except MessageRejected as exc:
            await reject(message, "an event", exc)
            return
        host = event.host_uuid
        self._lanes.setdefault(host, deque()).append((message, event))
        if host not in self._tasks:
            self._tasks[host] = asyncio.create_task(self._drain(host), name=f"events of {host}")

    async def on_stats(self, message: AbstractIncomingMessage) -> None:
        """Consumer callback of the stats queue: one try, acknowledged whatever happens."""
        try:
            event = read_event(message.body, user_id=message.user_id,
                               routing_key=message.routing_key, lossy=True)
        except MessageRejected as exc:
            await reject(message, "a stats", exc)
            return
        try:
            await self._sink(event)
        except Exception as exc:
            log.debug("stats sample of node %s not recorded: %s", event.host_uuid, exc)
        await settle(message)

    async def stop(self, grace: float) -> None:
        """Let the sink finish what it holds for up to `grace` seconds, then give up."""
        tasks = list(self._tasks.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _drain(self, host: uuid.UUID) -> None:
        lane = self._lanes[host]
        try:
            while lane:
                message, event = lane[0]
                if await self._record(message, event):
                    await settle(message)
                lane.popleft()
        finally:
            del self._lanes[host], self._tasks[host]

    async def _record(self, message: AbstractIncomingMessage, event: EventEnvelope) -> bool:
        """Give the event to the sink until it takes it; False if the delivery went away
        meanwhile (the connection dropped: the broker delivers it again)."""
        delays = self._retry.delays()
        while still_open(message):
            try:
                await self._sink(event)
            except Exception as exc:
                delay = next(delays)
                log.warning("event %s of node %s was not recorded (%s: %s); giving it to the "
                            "sink again in %.1f s", event.seq, event.host_uuid,
                            type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
            else:
                return True
        return False

