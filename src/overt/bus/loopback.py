"""An in-process transport: the engine and its agents in one event loop, for the fast lane.

No socket, no broker, no TLS: a `LoopbackBus` routes each command to the agent that
serves its host UUID and hands each node's events to the engine's sink in publish
order, at least once (an event the sink refuses is given again), as the real
transports promise (the contract suite runs over it too). Every message is encoded
and decoded on the way, so what crosses it is what crosses the wire.

Only tests and benchmarks build it, with simulated nodes: it is never a user-facing
default (a real deployment uses `direct` or `amqp`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from overt.bus.base import CommandHandler, CommandTimedOut, EventSink, NodeAddress, NodeUnreachable
from overt.protocol import CommandEnvelope, EventEnvelope, Reply
from overt.protocol.envelope import decode_command, decode_event, decode_reply

log = logging.getLogger(__name__)

REDELIVERY_S = 0.005  # how soon an event the sink refused is given again


class LoopbackBus:
    """Where one engine end and any number of agent ends meet."""

    def __init__(self) -> None:
        self._handlers: dict[uuid.UUID, CommandHandler] = {}
        self._sink: EventSink | None = None
        self._sink_attached = asyncio.Event()

    def engine(self) -> LoopbackEngineTransport:
        return LoopbackEngineTransport(self)

    def agent(self, host_uuid: uuid.UUID) -> LoopbackAgentTransport:
        return LoopbackAgentTransport(self, host_uuid)

    async def deliver(self, envelope: EventEnvelope) -> None:
        """Hand an event to the engine's sink once there is one; raises what the sink raises."""
        await self._sink_attached.wait()
        assert self._sink is not None
        await self._sink(decode_event(envelope.model_dump_json()))

    def attach(self, sink: EventSink | None) -> None:
        self._sink = sink
        if sink is not None:
            self._sink_attached.set()
        else:
            self._sink_attached.clear()

    @property
    def has_sink(self) -> bool:
        return self._sink is not None

    def serve(self, host_uuid: uuid.UUID, handler: CommandHandler | None) -> None:
        if handler is None:
            self._handlers.pop(host_uuid, None)
        else:
            self._handlers[host_uuid] = handler

    def handler(self, host_uuid: uuid.UUID) -> CommandHandler | None:
        return self._handlers.get(host_uuid)


class LoopbackEngineTransport:
    """The engine's end: a call runs the node's handler in its own task, as a node would."""

    def __init__(self, bus: LoopbackBus) -> None:
        self.bus = bus

    async def start(self, sink: EventSink | None) -> None:
        self.bus.attach(sink)

    async def call(self, node: NodeAddress, envelope: CommandEnvelope) -> Reply:
        handler = self.bus.handler(node.host_uuid)
        if handler is None:
            raise NodeUnreachable(f"node {node.host_uuid} is not connected")
        sent = decode_command(envelope.model_dump_json())
        # The node goes on with a command whose caller stopped waiting, as a real one does.
        task = asyncio.ensure_future(handler(sent))
        try:
            async with asyncio.timeout(envelope.timeout_s):
                reply = await asyncio.shield(task)
        except TimeoutError:
            raise CommandTimedOut(f"node {node.host_uuid} did not answer "
                                  f"{envelope.command.name} within {envelope.timeout_s:g} s"
                                  ) from None
        return decode_reply(reply.model_dump_json())

    async def close(self) -> None:
        self.bus.attach(None)


class LoopbackAgentTransport:
    """A node's end: events wait in a queue and reach the sink one at a time, in order."""

    def __init__(self, bus: LoopbackBus, host_uuid: uuid.UUID) -> None:
        self.bus = bus
        self.host_uuid = host_uuid
        self._queue: asyncio.Queue[EventEnvelope] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._stats: asyncio.Task[None] | None = None

    async def start(self, handler: CommandHandler) -> None:
        self.bus.serve(self.host_uuid, handler)
        self._ensure_sender()

    async def publish(self, event: EventEnvelope) -> None:
        self._queue.put_nowait(event)
        self._ensure_sender()

    async def publish_lossy(self, event: EventEnvelope) -> None:
        """Sent at once beside the ordered events; dropped while the previous one is out."""
        if not self.bus.has_sink or (self._stats is not None and not self._stats.done()):
            return
        self._stats = asyncio.create_task(self._send_lossy(event))

    async def close(self) -> None:
        self.bus.serve(self.host_uuid, None)
        for task in (self._sender, self._stats):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._sender = self._stats = None

    def _ensure_sender(self) -> None:
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name=f"events of {self.host_uuid}")

    async def _send(self) -> None:
        while True:
            event = await self._queue.get()
            while True:
                try:
                    await self.bus.deliver(event)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # not recorded: given again, like a broker would
                    log.debug("event %s of node %s given again: %s", event.seq, self.host_uuid,
                              exc)
                    await asyncio.sleep(REDELIVERY_S)

    async def _send_lossy(self, event: EventEnvelope) -> None:
        with contextlib.suppress(Exception):
            await self.bus.deliver(event)
