"""A node's end of the AMQP transport: serve commands from its own queue, publish events.

Commands are acknowledged only once their reply is confirmed by the broker, so a
broker restart mid-command ends in a redelivery; the redelivered command is
answered from the run in progress (or its cached reply), never run twice.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from aio_pika.abc import (
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
)
from aio_pika.exceptions import DeliveryError, PublishError

from overt.bus.amqp.link import LINK_ERRORS, RECONNECT, Backoff, BrokerLink, ConnectedHook
from overt.bus.amqp.messages import (
    event_message,
    parse_request_id,
    reject,
    reply_message,
    settle,
    still_open,
)
from overt.bus.amqp.outbox import Outbox
from overt.bus.amqp.topology import (
    REPLIES_EXCHANGE,
    command_queue_name,
    event_routing_key,
    node_username,
)
from overt.bus.amqp.url import BrokerUrl
from overt.bus.base import CommandHandler
from overt.protocol import (
    CommandEnvelope,
    ErrorCode,
    EventEnvelope,
    NodeError,
    ProtocolViolation,
    Reply,
    decode_command,
)
from overt.protocol.enrollment import BrokerCredentials

log = logging.getLogger(__name__)

ANSWERED_CACHE = 1024  # replies remembered per request id, for redelivered commands
REFUSAL_TTL_S = 60.0  # how long the answer to a command that could not be read is kept
UNROUTED_RETRY_S = 1.0
# Refusals (nacks) of one event in a row after which the node connects again, to the next
# broker of a cluster: a channel can stay refused after its queue's leader moved.
REFUSALS_BEFORE_RECONNECT = 3


@dataclass
class _Session:
    """What one connection gives the agent; replaced on every reconnection."""

    events: AbstractExchange  # publisher confirms, unroutable messages raise
    replies: AbstractExchange  # same channel
    stats: AbstractExchange  # no confirms: lossy
    pump: asyncio.Task[None] | None = None


class AmqpAgentTransport:
    """`AgentTransport` over RabbitMQ, with the node's own credentials from enrollment."""

    def __init__(
        self,
        credentials: BrokerCredentials,
        host_uuid: uuid.UUID,
        *,
        max_concurrent_commands: int = 16,
        max_unconfirmed_events: int = 10_000,
        backoff: Backoff = RECONNECT,
        connect_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        on_connected: ConnectedHook | None = None,
    ) -> None:
        url = BrokerUrl.parse(credentials.url)
        if url.username != credentials.username or url.username != node_username(host_uuid):
            raise ValueError(f"the broker credentials are for user {credentials.username!r}, "
                             f"not for node {host_uuid}: enroll the node again")
        if credentials.command_queue != command_queue_name(host_uuid):
            raise ValueError(f"command queue {credentials.command_queue!r} is not node "
                             f"{host_uuid}'s")
        self.host_uuid = host_uuid
        self._credentials = credentials
        self._user = url.username
        self._prefetch = max_concurrent_commands
        self._outbox = Outbox(max_unconfirmed_events)
        self._handler: CommandHandler | None = None
        self._session: _Session | None = None
        self._running: dict[uuid.UUID, asyncio.Task[Reply]] = {}
        self._answered: OrderedDict[uuid.UUID, Reply] = OrderedDict()
        self._link = BrokerLink(
            url, name=f"overt node {host_uuid}", on_connect=self._on_connect,
            on_disconnect=self._on_disconnect, backoff=backoff,
            connect_timeout=connect_timeout, ssl_context=ssl_context, on_connected=on_connected)

    async def start(self, handler: CommandHandler) -> None:
        """Serve commands with `handler`; returns after the first connection attempt
        (a broker that is down is logged and tried again in the background)."""
        self._handler = handler
        await self._link.start()

    async def wait_connected(self) -> None:
        """Wait until connected and set up (bound the wait with asyncio.timeout)."""
        await self._link.wait_connected()

    async def publish(self, event: EventEnvelope) -> None:
        if event.seq is None:
            raise ValueError("an event without seq is lossy: send it with publish_lossy")
        self._check_origin(event)
        await self._outbox.put(event)

    async def publish_lossy(self, event: EventEnvelope) -> None:
        if event.seq is not None:
            raise ValueError("a sequenced event must not be lost: send it with publish")
        self._check_origin(event)
        session = self._session
        if session is None:
            log.debug("not connected to the broker: stats sample dropped")
            return
        try:
            await session.stats.publish(
                event_message(event, user_id=self._user),
                event_routing_key(self.host_uuid, event.event.type), mandatory=False)
        except LINK_ERRORS as exc:
            log.debug("stats sample dropped: %s", exc)

    @property
    def unconfirmed(self) -> int:
        """Events published that the broker has not confirmed yet."""
        return len(self._outbox)

    async def flush(self) -> None:
        """Wait until the broker has confirmed every event published so far."""
        await self._outbox.drained()

    async def close(self, *, flush_timeout: float = 2.0) -> None:
        if self._link.connected and len(self._outbox):
            try:
                async with asyncio.timeout(flush_timeout):
                    await self.flush()
            except TimeoutError:
                log.warning("closing with %d event(s) the broker has not confirmed; the "
                            "engine resyncs this node when it comes back", len(self._outbox))
        await self._link.close()
        for task in list(self._running.values()):
            task.cancel()

    def _check_origin(self, event: EventEnvelope) -> None:
        if event.host_uuid != self.host_uuid:
            raise ValueError(f"event of host {event.host_uuid} sent by node {self.host_uuid}")

    async def _on_connect(self, connection: AbstractConnection) -> None:
        confirmed = await connection.channel(publisher_confirms=True, on_return_raises=True)
        lossy = await connection.channel(publisher_confirms=False)
        commands = await connection.channel()
        for channel in (confirmed, lossy, commands):
            self._link.watch(channel)
        await commands.set_qos(prefetch_count=self._prefetch)
        session = _Session(
            events=await confirmed.get_exchange(self._credentials.events_exchange, ensure=False),
            replies=await confirmed.get_exchange(REPLIES_EXCHANGE, ensure=False),
            stats=await lossy.get_exchange(self._credentials.stats_exchange, ensure=False))
        session.pump = asyncio.create_task(self._pump(session), name="overt event pump")
        self._session = session
        queue = await commands.get_queue(self._credentials.command_queue, ensure=False)
        await queue.consume(self._on_command)

    def _on_disconnect(self) -> None:
        session, self._session = self._session, None
        if session is not None and session.pump is not None:
            session.pump.cancel()

    async def _pump(self, session: _Session) -> None:
        """Publish the outbox in order, one confirmed event at a time, until the link drops."""
        unrouted_logged = False
        refusals = 0
        while True:
            event = await self._outbox.head()
            assert event.seq is not None
            try:
                await session.events.publish(
                    event_message(event, user_id=self._user),
                    event_routing_key(self.host_uuid, event.event.type), mandatory=True)
            except PublishError:
                if not unrouted_logged:
                    log.warning("no queue takes this node's events yet (has the engine set up "
                                "the broker?); keeping them and trying again")
                    unrouted_logged = True
                await asyncio.sleep(UNROUTED_RETRY_S)
                continue
            except DeliveryError as exc:
                refusals += 1
                log.warning("the broker refused event %d (%s); trying again", event.seq, exc)
                if refusals >= REFUSALS_BEFORE_RECONNECT:
                    await self._link.reconnect(f"the broker refused event {event.seq} "
                                               f"{refusals} times in a row", elsewhere=True)
                    return
                await asyncio.sleep(UNROUTED_RETRY_S)
                continue
            except LINK_ERRORS as exc:
                log.debug("event pump stopped: %s", exc)
                return
            unrouted_logged, refusals = False, 0
            await self._outbox.confirm(event)

    async def _on_command(self, message: AbstractIncomingMessage) -> None:
        request_id = parse_request_id(message.correlation_id)
        reply_to = message.reply_to
        try:
            envelope = decode_command(message.body)
            if envelope.request_id != request_id:
                raise ProtocolViolation(ErrorCode.BAD_REQUEST,
                                        "the command's request_id differs from its message's "
                                        "correlation id")
        except ProtocolViolation as exc:
            await reject(message, "a command", exc)
            if request_id is not None and reply_to:
                await self._send_reply(Reply.failure(request_id, exc.error), reply_to,
                                       expires_in=REFUSAL_TTL_S)
            return
        if not reply_to:
            await reject(message, "a command", ValueError("it has no reply_to"))
            return
        reply = await self._execute(envelope)
        if not still_open(message):
            return  # the broker delivers the command again; that delivery carries the reply
        if await self._send_reply(reply, reply_to, expires_in=envelope.timeout_s):
            await settle(message)

    async def _execute(self, envelope: CommandEnvelope) -> Reply:
        """Run a command once per request id, whatever the number of its deliveries."""
        request_id = envelope.request_id
        if request_id in self._answered:
            log.info("request %s delivered again: answering from the first run", request_id)
            return self._answered[request_id]
        task = self._running.get(request_id)
        if task is None:
            task = asyncio.create_task(self._handle(envelope), name=f"command {request_id}")
            self._running[request_id] = task
            task.add_done_callback(lambda done: self._remember(request_id, done))
        # The handler runs in its own task: a channel closing cancels this
        # consumer, and must not cancel a VM start half way.
        return await asyncio.shield(task)

    def _remember(self, request_id: uuid.UUID, task: asyncio.Task[Reply]) -> None:
        self._running.pop(request_id, None)
        if not task.cancelled() and task.exception() is None:
            self._answered[request_id] = task.result()
            while len(self._answered) > ANSWERED_CACHE:
                self._answered.popitem(last=False)

    async def _handle(self, envelope: CommandEnvelope) -> Reply:
        assert self._handler is not None
        try:
            return await self._handler(envelope)
        except Exception as exc:  # the handler's contract is to answer, never to raise
            log.exception("command %s (%s) failed in the agent", envelope.request_id,
                          envelope.command.name)
            return Reply.failure(envelope.request_id, NodeError(
                code=ErrorCode.INTERNAL, message=f"the agent failed: {type(exc).__name__}"))

    async def _send_reply(self, reply: Reply, reply_to: str, *, expires_in: float) -> bool:
        """Publish a reply and wait for the broker's confirm; False when it could not."""
        session = self._session
        if session is None:
            return False
        try:
            await session.replies.publish(
                reply_message(reply, user_id=self._user, expires_in=expires_in), reply_to,
                mandatory=False)
        except LINK_ERRORS as exc:
            log.warning("could not send the reply to request %s (%s); the broker delivers "
                        "the command again and the reply goes with it", reply.request_id, exc)
            return False
        return True

