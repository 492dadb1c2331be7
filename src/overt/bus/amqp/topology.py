"""Overt's exchanges, queues, routing keys and node permissions on the broker, declared once.

The engine declares the shared part on every connection (AMQP) and a node's own
part at enrollment (management API); both read the same specs here, so the two
declarations can never disagree (a mismatch would be PRECONDITION_FAILED).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from aio_pika.abc import AbstractChannel

# Engine -> node: direct exchange, routing key = the node's host uuid.
COMMANDS_EXCHANGE = "overt.commands"
# Node -> engine replies: direct exchange, routing key = the engine's reply queue.
REPLIES_EXCHANGE = "overt.replies"
# Node -> engine sequenced events: topic exchange, node.<host uuid>.<event type>.
EVENTS_EXCHANGE = "overt.events"
# Node -> engine stats samples (lossy): topic exchange, node.<host uuid>.stats.
STATS_EXCHANGE = "overt.stats"
# Rejected, expired or overflowing messages, kept for an administrator to inspect.
DEAD_EXCHANGE = "overt.dead"

EVENTS_QUEUE = "overt.events"  # before partitions: drained, no longer bound
EVENT_PARTITION_PREFIX = "overt.events.p"
STATS_QUEUE = "overt.stats"
DEAD_QUEUE = "overt.dead"

NODE_USER_PREFIX = "overt-node-"
NODE_ROUTING_PREFIX = "node."

# How many commands may wait for a node that does not take them; then publishing
# fails at once (the engine's call raises NodeUnreachable) instead of piling up.
COMMAND_QUEUE_LIMIT = 1000
# Stats are worth something for a minute at most, and never more than this many.
STATS_QUEUE_LIMIT = 5000
STATS_TTL_MS = 60_000
DEAD_QUEUE_LIMIT = 10_000
# A reply queue whose engine process is gone disappears after this long unused.
REPLY_QUEUE_EXPIRES_MS = 300_000
# Replies waiting for one engine process; more are refused to their publisher.
REPLY_QUEUE_LIMIT = 10_000
# Events waiting for the monitors, all nodes together: beyond it the broker refuses
# (nacks) new ones and nodes keep them and publish them again later; no event is lost.
EVENTS_QUEUE_LIMIT = 1_000_000
# Node events go to one of this many partition queues, a node always to the same one, so
# that each node's events have one consumer at a time (docs/broker.md). Changing it moves
# nodes between partitions: do it with every monitor stopped and the partitions drained.
EVENT_PARTITIONS = 32

_INSTANCE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ExchangeSpec:
    name: str
    type: str  # direct, topic, fanout


@dataclass(frozen=True)
class QueueSpec:
    """A durable queue, its arguments and what it is bound to (exchange, routing key)."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    bindings: tuple[tuple[str, str], ...] = ()


SHARED_EXCHANGES = (
    ExchangeSpec(COMMANDS_EXCHANGE, "direct"),
    ExchangeSpec(REPLIES_EXCHANGE, "direct"),
    ExchangeSpec(EVENTS_EXCHANGE, "topic"),
    ExchangeSpec(STATS_EXCHANGE, "topic"),
    ExchangeSpec(DEAD_EXCHANGE, "fanout"),
)

# Classic durable queues: on one broker they are what quorum queues would be minus
# the replication, and a message requeued by a classic queue keeps its place.
SHARED_QUEUES = (
    QueueSpec(DEAD_QUEUE, {"x-max-length": DEAD_QUEUE_LIMIT, "x-overflow": "drop-head"},
              bindings=((DEAD_EXCHANGE, ""),)),
    # Left from before partitions (monitors drain it); its old binding is removed.
    QueueSpec(EVENTS_QUEUE, {"x-dead-letter-exchange": DEAD_EXCHANGE}),
    # Durable definition, transient messages: stats never touch the disk, and the
    # queue survives a broker restart without anyone declaring it again. No dead
    # letters: stats expire and overflow by design.
    QueueSpec(STATS_QUEUE, {"x-max-length": STATS_QUEUE_LIMIT, "x-overflow": "drop-head",
                            "x-message-ttl": STATS_TTL_MS},
              bindings=((STATS_EXCHANGE, NODE_ROUTING_PREFIX + "#"),)),
)


@dataclass(frozen=True)
class PolicySpec:
    """A broker policy: limits of queues that already exist (their arguments cannot change)."""

    name: str
    pattern: str
    definition: dict[str, Any]


SHARED_POLICIES = (
    PolicySpec("overt-events-limit", f"^{re.escape(EVENTS_QUEUE)}(\\.p[0-9]+)?$",
               {"max-length": EVENTS_QUEUE_LIMIT, "overflow": "reject-publish"}),
)
# The binding every events queue had before partitions; removed where found.
LEGACY_EVENTS_BINDING = (EVENTS_EXCHANGE, NODE_ROUTING_PREFIX + "#")


def event_partition(host_uuid: uuid.UUID) -> int:
    """The partition of a node's events: a stable hash of its uuid (any uuid scheme)."""
    digest = hashlib.blake2b(host_uuid.bytes, digest_size=8).digest()
    return int.from_bytes(digest, "big") % EVENT_PARTITIONS


def partition_queue(partition: int) -> QueueSpec:
    """One partition's events queue. Who consumes it is decided by the monitors' advisory
    locks, not by the broker: RabbitMQ 3.10 and 3.11 crash a classic queue with single
    active consumer when its active consumer dies with messages in hand while another
    waits (rabbitmq-server issue 5460), and the consumer left waiting is never told."""
    if not 0 <= partition < EVENT_PARTITIONS:
        raise ValueError(f"partition {partition} is not between 0 and {EVENT_PARTITIONS - 1}")
    return QueueSpec(f"{EVENT_PARTITION_PREFIX}{partition:02d}",
                     {"x-dead-letter-exchange": DEAD_EXCHANGE})


def node_events_binding(host_uuid: uuid.UUID) -> tuple[str, str, QueueSpec]:
    """(exchange, routing key pattern, queue) that route one node's events to its partition."""
    return (EVENTS_EXCHANGE, f"{NODE_ROUTING_PREFIX}{host_uuid}.#",
            partition_queue(event_partition(host_uuid)))


def node_username(host_uuid: uuid.UUID) -> str:
    return f"{NODE_USER_PREFIX}{host_uuid}"


def host_of_username(username: str) -> uuid.UUID | None:
    """The host uuid of a node's broker user, None for any other user."""
    if not username.startswith(NODE_USER_PREFIX):
        return None
    try:
        return uuid.UUID(username.removeprefix(NODE_USER_PREFIX))
    except ValueError:
        return None


def command_queue_name(host_uuid: uuid.UUID) -> str:
    return f"overt.node.{host_uuid}.commands"


def command_queue(host_uuid: uuid.UUID) -> QueueSpec:
    return QueueSpec(
        command_queue_name(host_uuid),
        {"x-dead-letter-exchange": DEAD_EXCHANGE, "x-max-length": COMMAND_QUEUE_LIMIT,
         "x-overflow": "reject-publish"},
        bindings=((COMMANDS_EXCHANGE, str(host_uuid)),),
    )


def reply_queue(instance: str) -> QueueSpec:
    """The reply queue of one engine process; it outlives a broker restart, not the process."""
    if not _INSTANCE_RE.match(instance):
        raise ValueError(f"{instance!r} is not a valid engine instance name: 1-64 letters, "
                         "digits, '_' or '-'")
    name = f"overt.engine.{instance}.replies"
    return QueueSpec(
        name,
        {"x-dead-letter-exchange": DEAD_EXCHANGE, "x-expires": REPLY_QUEUE_EXPIRES_MS,
         "x-max-length": REPLY_QUEUE_LIMIT, "x-overflow": "reject-publish"},
        bindings=((REPLIES_EXCHANGE, name),),
    )


def event_routing_key(host_uuid: uuid.UUID, event_type: str) -> str:
    return f"{NODE_ROUTING_PREFIX}{host_uuid}.{event_type}"


@dataclass(frozen=True)
class NodePermissions:
    """What a node's broker user may do: RabbitMQ permission and topic permission regexes."""

    configure: str
    write: str
    read: str
    topic_write: str  # routing keys it may publish on the events and stats exchanges


def node_permissions(host_uuid: uuid.UUID) -> NodePermissions:
    """Least privilege: read its own command queue, publish its own events, nothing else."""
    return NodePermissions(
        configure="^$",
        write=f"^({re.escape(EVENTS_EXCHANGE)}|{re.escape(STATS_EXCHANGE)}|"
              f"{re.escape(REPLIES_EXCHANGE)})$",
        read=f"^{re.escape(command_queue_name(host_uuid))}$",
        topic_write=f"^{re.escape(NODE_ROUTING_PREFIX)}{host_uuid}\\.",
    )


# What the engine's own user needs: everything named overt.* in its vhost.
ENGINE_PERMISSION = r"^overt\."


async def declare_exchanges(channel: AbstractChannel) -> None:
    for spec in SHARED_EXCHANGES:
        await channel.declare_exchange(spec.name, spec.type, durable=True)


def queue_arguments(spec: QueueSpec, *, quorum: bool) -> dict[str, Any]:
    """`spec`'s arguments, as a quorum queue when asked (a RabbitMQ cluster: the queue is
    replicated on a majority of the brokers and survives losing any one of them). The
    type of a queue is fixed when it is made: choose before the first engine starts."""
    return {**spec.arguments, "x-queue-type": "quorum"} if quorum else dict(spec.arguments)


async def declare_queue(channel: AbstractChannel, spec: QueueSpec, *,
                        quorum: bool = False) -> None:
    """Declare `spec` and its bindings (idempotent with the same arguments)."""
    queue = await channel.declare_queue(spec.name, durable=True,
                                        arguments=queue_arguments(spec, quorum=quorum))
    for exchange, routing_key in spec.bindings:
        await queue.bind(exchange, routing_key)
