"""The engine's end of the AMQP transport: commands out with replies back, events in.

One instance per engine process. Every instance has its own durable reply queue,
which outlives a broker restart: a call keeps waiting across the restart and its
reply, confirmed by the node, reaches it afterwards. With a sink (monitor
processes), the instance also competes with the other monitors for the shared
events and stats queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aio_pika.exceptions import DeliveryError, PublishError

from overt.bus.amqp.delivery import EventDelivery
from overt.bus.amqp.link import LINK_ERRORS, RECONNECT, Backoff, BrokerLink, ConnectedHook
from overt.bus.amqp.messages import (
    DeadLetterBudget,
    MessageRejected,
    command_message,
    parse_request_id,
    read_reply,
    reject,
    settle,
)
from overt.bus.amqp.topology import (
    COMMANDS_EXCHANGE,
    EVENT_PARTITIONS,
    EVENTS_QUEUE,
    LEGACY_EVENTS_BINDING,
    SHARED_QUEUES,
    STATS_QUEUE,
    declare_exchanges,
    declare_queue,
    node_events_binding,
    node_username,
    partition_queue,
    reply_queue,
)
from overt.bus.amqp.url import BrokerUrl
from overt.bus.base import (
    CommandTimedOut,
    EventSink,
    NodeAddress,
    NodeUnreachable,
    TransportError,
)
from overt.protocol import CommandEnvelope, Reply

log = logging.getLogger(__name__)

# How a monitor gives an event to its sink again after the sink raised.
SINK_RETRY = Backoff(initial=0.2, maximum=5.0)

Callback = Callable[[AbstractIncomingMessage], Awaitable[None]]


@dataclass
class _Pending:
    host_uuid: uuid.UUID
    reply: asyncio.Future[Reply]


@dataclass
class _Session:
    """What one connection gives the engine; replaced on every reconnection."""

    commands: AbstractExchange  # publisher confirms, unroutable commands raise
    control: AbstractChannel
    connection: AbstractConnection
    consumers: list[tuple[AbstractQueue, str]] = field(default_factory=list)
    # Partitions consumed: each on a channel of its own, closed to give its events back.
    partitions: dict[int, tuple[AbstractChannel, AbstractQueue, str]] = field(
        default_factory=dict)
    routed: set[uuid.UUID] = field(default_factory=set)  # nodes bound in this session


class AmqpEngineTransport:
    """`EngineTransport` over RabbitMQ for one engine process (api, worker or monitor)."""

    def __init__(
        self,
        url: str,
        *,
        instance: str | None = None,
        prefetch: int = 200,
        stats_prefetch: int = 200,
        backoff: Backoff = RECONNECT,
        sink_retry: Backoff = SINK_RETRY,
        connect_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        on_connected: ConnectedHook | None = None,
        assigned: bool = False,
        quorum_queues: bool = False,
    ) -> None:
        self._url = BrokerUrl.parse(url)
        self._quorum = quorum_queues
        # The event partitions this process consumes (it must be given them when assigned).
        self._wanted: set[int] = set() if assigned else set(range(EVENT_PARTITIONS))
        self._routes: set[uuid.UUID] = set()  # nodes whose events monitors route
        self._changing = asyncio.Lock()
        self.instance = instance or uuid.uuid4().hex[:12]
        self._replies = reply_queue(self.instance)
        self._prefetch = prefetch
        self._stats_prefetch = stats_prefetch
        self._sink_retry = sink_retry
        self._pending: dict[uuid.UUID, _Pending] = {}
        self._session: _Session | None = None
        self._delivery: EventDelivery | None = None
        self._dead_letters = DeadLetterBudget()  # per publishing node, events and replies
        self._link = BrokerLink(
            self._url, name=f"overt engine {self.instance}", on_connect=self._on_connect,
            on_disconnect=self._on_disconnect, backoff=backoff,
            connect_timeout=connect_timeout, ssl_context=ssl_context, on_connected=on_connected)

    async def start(self, sink: EventSink | None) -> None:
        """Connect, and with a sink consume node events; returns after the first attempt
        (a broker that is down is logged and tried again in the background)."""
        if sink is not None:
            self._delivery = EventDelivery(sink, retry=self._sink_retry,
                                           budget=self._dead_letters)
        await self._link.start()

    async def wait_connected(self) -> None:
        """Wait until connected and set up (bound the wait with asyncio.timeout)."""
        await self._link.wait_connected()

    @property
    def partitions(self) -> frozenset[int]:
        """The event partitions this process is to consume."""
        return frozenset(self._wanted)

    @property
    def counts(self) -> dict[str, int]:
        """Events taken from the broker, of them redelivered, and refusals by the sink."""
        delivery = self._delivery
        if delivery is None:
            return {"events": 0, "redelivered": 0, "refused": 0}
        return {"events": delivery.events, "redelivered": delivery.redelivered,
                "refused": delivery.refused}

    async def take_partition(self, partition: int) -> None:
        """Consume `partition` from now on (after every reconnection too)."""
        partition_queue(partition)  # checks the number
        async with self._changing:
            self._wanted.add(partition)
            session = self._session
            if session is not None and partition not in session.partitions:
                with contextlib.suppress(*LINK_ERRORS):
                    await self._consume_partition(session, partition)

    async def release_partition(self, partition: int, *, grace: float = 10.0) -> None:
        """Stop consuming `partition`; return once the events in hand are recorded (up to
        `grace` s; the rest go back to the broker), so that its next consumer starts
        where this one stopped."""
        async with self._changing:
            self._wanted.discard(partition)
            session = self._session
            held = session.partitions.pop(partition, None) if session is not None else None
            if held is None:
                return
            channel, queue, tag = held
            with contextlib.suppress(*LINK_ERRORS):
                await queue.cancel(tag)
            if self._delivery is not None:
                await self._delivery.finish_partition(partition, grace)
            self._link.unwatch(channel)  # closed on purpose: no reconnection
            with contextlib.suppress(*LINK_ERRORS):
                await channel.close()

    async def route_nodes(self, hosts: set[uuid.UUID]) -> None:
        """Bind these nodes' events to their partitions (idempotent; nodes enrolled before
        partitions existed have no binding of their own)."""
        self._routes |= hosts
        session = self._session
        if session is None:
            return
        for host in hosts - session.routed:
            await self._route(session, host)

    async def _route(self, session: _Session, host: uuid.UUID) -> None:
        exchange, pattern, queue = node_events_binding(host)
        with contextlib.suppress(*LINK_ERRORS):
            bound = await session.control.get_queue(queue.name, ensure=False)
            await bound.bind(exchange, pattern)
            session.routed.add(host)

    async def call(self, node: NodeAddress, envelope: CommandEnvelope) -> Reply:
        session = self._session
        host, name = node.host_uuid, envelope.command.name
        if session is None:
            raise NodeUnreachable(f"cannot send {name} to node {host}: no connection to the "
                                  f"broker at {self._url} (down or unreachable)")
        request_id = envelope.request_id
        if request_id in self._pending:
            raise ValueError(f"request {request_id} is already waiting for its reply")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + envelope.timeout_s
        pending = self._pending[request_id] = _Pending(host, loop.create_future())
        try:
            async with asyncio.timeout_at(deadline):
                await self._send(session, host, envelope, deadline - loop.time())
                return await pending.reply
        except TimeoutError:
            raise CommandTimedOut(f"node {host} did not answer {name} within "
                                  f"{envelope.timeout_s:g} s; it may still act on it") from None
        finally:
            del self._pending[request_id]

    async def close(self, *, grace: float = 5.0) -> None:
        """Stop consuming, let the sink finish what it holds (up to `grace` s), disconnect."""
        session = self._session
        if session is not None:
            for _channel, queue, tag in session.partitions.values():
                with contextlib.suppress(*LINK_ERRORS):
                    await queue.cancel(tag)
            for queue, tag in session.consumers:
                with contextlib.suppress(*LINK_ERRORS):
                    await queue.cancel(tag)
        if self._delivery is not None:
            await self._delivery.stop(grace)
        await self._link.close()
        for pending in self._pending.values():
            if not pending.reply.done():
                pending.reply.set_exception(NodeUnreachable("the engine's transport closed"))

    async def _send(self, session: _Session, host: uuid.UUID, envelope: CommandEnvelope,
                    expires_in: float) -> None:
        message = command_message(envelope, reply_to=self._replies.name,
                                  user_id=self._url.username, expires_in=expires_in)
        try:
            await session.commands.publish(message, str(host), mandatory=True)
        except PublishError:
            raise NodeUnreachable(f"node {host} has no command queue on the broker: it is not "
                                  "enrolled, or its enrollment was revoked") from None
        except DeliveryError:
            raise NodeUnreachable(f"the broker refused a command for node {host}: its command "
                                  "queue is full, the node takes no commands") from None
        except LINK_ERRORS as exc:
            raise NodeUnreachable(f"lost the broker connection while sending a command to "
                                  f"node {host}: {self._url.scrub(str(exc))}") from None

    async def _on_connect(self, connection: AbstractConnection) -> None:
        control = await connection.channel(publisher_confirms=True, on_return_raises=True)
        self._link.watch(control)
        await declare_exchanges(control)
        for spec in (*SHARED_QUEUES, self._replies):
            await declare_queue(control, spec, quorum=self._quorum)
        session = _Session(commands=await control.get_exchange(COMMANDS_EXCHANGE, ensure=False),
                           control=control, connection=connection)
        await self._consume(connection, session, self._replies.name, self._on_reply, 1000)
        if self._delivery is not None:
            for partition in range(EVENT_PARTITIONS):
                await declare_queue(control, partition_queue(partition), quorum=self._quorum)
            # Events queued before partitions existed are drained by every monitor, as
            # competing consumers (their lanes keep each node's order, see delivery.py).
            exchange, routing_key = LEGACY_EVENTS_BINDING
            legacy = await control.get_queue(EVENTS_QUEUE, ensure=False)
            await legacy.unbind(exchange, routing_key)
            await self._consume(connection, session, EVENTS_QUEUE, self._delivery.on_event,
                                self._prefetch)
            await self._consume(connection, session, STATS_QUEUE, self._delivery.on_stats,
                                self._stats_prefetch)
            for host in self._routes:
                await self._route(session, host)
        async with self._changing:  # a partition taken meanwhile is consumed here
            if self._delivery is not None:
                for partition in sorted(self._wanted):
                    await self._consume_partition(session, partition)
            self._session = session

    async def _consume_partition(self, session: _Session, partition: int) -> None:
        assert self._delivery is not None
        channel = await session.connection.channel()
        self._link.watch(channel)
        await channel.set_qos(prefetch_count=self._prefetch)
        queue = await channel.get_queue(partition_queue(partition).name, ensure=False)
        tag = await queue.consume(self._delivery.on_event)
        session.partitions[partition] = (channel, queue, tag)

    async def _consume(self, connection: AbstractConnection, session: _Session, queue_name: str,
                       callback: Callback, prefetch: int) -> None:
        channel = await connection.channel()
        self._link.watch(channel)
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.get_queue(queue_name, ensure=False)
        session.consumers.append((queue, await queue.consume(callback)))

    def _on_disconnect(self) -> None:
        self._session = None

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        request_id = parse_request_id(message.correlation_id)
        pending = self._pending.get(request_id) if request_id else None
        if request_id is None or pending is None:
            log.info("dropped a reply to request %r: no call waits for it (it gave up, or "
                     "was answered already)", message.correlation_id)
            await settle(message)
            return
        try:
            reply = read_reply(message.body, user_id=message.user_id, request_id=request_id,
                               host_uuid=pending.host_uuid)
        except MessageRejected as exc:
            await reject(message, "a reply", exc, self._dead_letters)
            if message.user_id == node_username(pending.host_uuid) and not pending.reply.done():
                pending.reply.set_exception(TransportError(
                    f"node {pending.host_uuid} answered request {request_id} with a reply "
                    f"that cannot be read: {exc}"))
            return
        if not pending.reply.done():
            pending.reply.set_result(reply)
        await settle(message)

