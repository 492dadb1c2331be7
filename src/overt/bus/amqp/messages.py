"""Protocol envelopes to AMQP messages and back, with the checks of who sent what.

The broker vouches for two things: the `user_id` property (RabbitMQ refuses a
message whose user_id is not the publisher's own user) and, through topic
permissions, that a node publishes only under its own routing keys. What is
left to check here is that the envelope agrees with both.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable

from aio_pika import DeliveryMode, Message
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import ChannelInvalidStateError

from overt.bus.amqp.link import LINK_ERRORS
from overt.bus.amqp.topology import event_routing_key, node_username
from overt.protocol import (
    CommandEnvelope,
    EventEnvelope,
    ProtocolViolation,
    Reply,
    decode_event,
    decode_reply,
)

log = logging.getLogger(__name__)

JSON = "application/json"


class MessageRejected(ValueError):
    """A message that is dropped (dead-lettered) rather than delivered; says why."""


def command_message(envelope: CommandEnvelope, *, reply_to: str, user_id: str,
                    expires_in: float) -> Message:
    """A command that the broker drops once the caller has stopped waiting for it."""
    request_id = str(envelope.request_id)
    return Message(
        envelope.model_dump_json().encode(), content_type=JSON,
        delivery_mode=DeliveryMode.PERSISTENT, correlation_id=request_id,
        message_id=request_id, reply_to=reply_to, expiration=max(expires_in, 0.001),
        type=envelope.command.name, user_id=user_id, timestamp=time.time())


def reply_message(reply: Reply, *, user_id: str, expires_in: float) -> Message:
    request_id = str(reply.request_id)
    return Message(
        reply.model_dump_json().encode(), content_type=JSON,
        delivery_mode=DeliveryMode.PERSISTENT, correlation_id=request_id,
        message_id=f"reply-{request_id}", expiration=max(expires_in, 0.001),
        user_id=user_id, timestamp=time.time())


def event_message(event: EventEnvelope, *, user_id: str) -> Message:
    """Sequenced events are persistent; lossy ones (seq None) never touch the disk."""
    sequenced = event.seq is not None
    return Message(
        event.model_dump_json().encode(), content_type=JSON,
        delivery_mode=DeliveryMode.PERSISTENT if sequenced else DeliveryMode.NOT_PERSISTENT,
        message_id=f"{event.boot_id}.{event.seq}" if sequenced else None,
        type=event.event.type, user_id=user_id, timestamp=event.sent_at)


def read_event(body: bytes, *, user_id: str | None, routing_key: str | None,
               lossy: bool) -> EventEnvelope:
    """The event in a message, if its publisher is the node it claims to come from."""
    try:
        event = decode_event(body)
    except ProtocolViolation as exc:
        raise MessageRejected(str(exc)) from None
    if user_id is None:
        raise MessageRejected("the message has no user_id: its publisher did not say who "
                              "it is, so it cannot be trusted")
    if user_id != node_username(event.host_uuid):
        raise MessageRejected(f"broker user {user_id!r} sent an event of node "
                              f"{event.host_uuid}")
    expected = event_routing_key(event.host_uuid, event.event.type)
    if routing_key != expected:
        raise MessageRejected(f"routing key {routing_key!r} does not match the event "
                              f"(expected {expected!r})")
    if lossy and event.seq is not None:
        raise MessageRejected(f"sequenced event {event.seq} sent on the lossy stats path")
    if not lossy and event.seq is None:
        raise MessageRejected("an event without a sequence number sent on the events path")
    return event


def read_reply(body: bytes, *, user_id: str | None, request_id: uuid.UUID,
               host_uuid: uuid.UUID) -> Reply:
    """The reply to `request_id`, if it comes from `host_uuid`, the node that was asked."""
    if user_id != node_username(host_uuid):
        raise MessageRejected(f"the reply to request {request_id} (sent to node {host_uuid}) "
                              f"came from broker user {user_id!r}")
    try:
        reply = decode_reply(body)
    except ProtocolViolation as exc:
        raise MessageRejected(str(exc)) from None
    if reply.request_id != request_id:
        raise MessageRejected(f"reply for request {reply.request_id} carried correlation id "
                              f"{request_id}")
    return reply


def parse_request_id(correlation_id: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(correlation_id) if correlation_id else None
    except ValueError:
        return None


def still_open(message: AbstractIncomingMessage) -> bool:
    """False once the channel that delivered `message` is gone (the broker redelivers it)."""
    try:
        return not message.channel.is_closed
    except ChannelInvalidStateError:
        return False


async def settle(message: AbstractIncomingMessage) -> None:
    """Acknowledge; on a channel that is gone there is nothing left to acknowledge."""
    with contextlib.suppress(*LINK_ERRORS):
        await message.ack()


# Rejected messages of one publisher that are dead-lettered (and logged) per window;
# beyond it they are dropped. The dead-letter queue is shared and bounded (it drops its
# oldest messages): without a budget one node could flush everyone's dead letters, and
# fill the engine's log, by sending what it knows will be rejected.
DEAD_LETTER_BUDGET = 50
DEAD_LETTER_WINDOW_S = 3600.0


class DeadLetterBudget:
    """How many more rejected messages of each publisher may be dead-lettered."""

    def __init__(self, per_publisher: int = DEAD_LETTER_BUDGET,
                 window_s: float = DEAD_LETTER_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_publisher = per_publisher
        self.window_s = window_s
        self.clock = clock
        self._spent: dict[str | None, tuple[float, int]] = {}

    def take(self, publisher: str | None) -> int:
        """Spend one from `publisher`'s budget: how many were spent in this window (the
        message is dead-lettered while that is at most `per_publisher`)."""
        now = self.clock()
        started, spent = self._spent.get(publisher, (now, 0))
        if now - started >= self.window_s:
            started, spent = now, 0
        if len(self._spent) > 10_000:  # publishers come and go: forget the old windows
            self._spent = {k: v for k, v in self._spent.items() if now - v[0] < self.window_s}
        self._spent[publisher] = (started, spent + 1)
        return spent + 1


async def reject(message: AbstractIncomingMessage, what: str, reason: Exception,
                 budget: DeadLetterBudget | None = None) -> None:
    """Dead-letter a message that cannot be accepted, saying why in the log; past the
    publisher's `budget`, drop it instead (and say so once per window)."""
    spent = budget.take(message.user_id) if budget is not None else 0
    if budget is not None and spent > budget.per_publisher:
        if spent == budget.per_publisher + 1:
            log.warning("broker user %r sent more than %d messages that were rejected within "
                        "%.0f s; dropping its further rejected messages without dead-lettering "
                        "or logging them", message.user_id, budget.per_publisher,
                        budget.window_s)
        with contextlib.suppress(*LINK_ERRORS):
            await message.ack()
        return
    log.warning("rejected %s message from broker user %r (routing key %r): %s", what,
                message.user_id, message.routing_key, reason)
    with contextlib.suppress(*LINK_ERRORS):
        await message.reject(requeue=False)
