"""The transport seam: what the engine and the agent need from any transport.

Two real implementations exist (`overt.bus.direct`, `overt.bus.amqp`) and one
contract suite runs unchanged over both. Transports carry `overt.protocol`
envelopes and know nothing of VMs or jobs.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from overt.protocol import CommandEnvelope, EventEnvelope, Reply


class TransportError(RuntimeError):
    """The message could not be delivered or answered. Always transient for jobs."""


class NodeUnreachable(TransportError):
    """Nothing answered at the node (down, network, broker unavailable)."""


class CommandTimedOut(TransportError):
    """The node did not answer within the command's timeout; it may still act on it."""


@dataclass(frozen=True)
class NodeAddress:
    """How the engine reaches one node: its identity, and for `direct` its RPC URL."""

    host_uuid: uuid.UUID
    url: str | None = None  # https://ADDRESS:54321 for direct; unused by amqp
    # The node certificate the engine issued last (direct: any other is refused).
    certificate_fingerprint: str | None = None


# Engine side: applies one node event; returns once it is durably recorded, so that
# the transport may acknowledge it. Raising means "not recorded": redeliver later.
EventSink = Callable[[EventEnvelope], Awaitable[None]]

# Agent side: executes one command and answers. Never raises: errors are Replies.
CommandHandler = Callable[[CommandEnvelope], Awaitable[Reply]]


class EngineTransport(Protocol):
    """The engine's end: send commands to nodes, receive their events."""

    async def start(self, sink: EventSink | None) -> None:
        """Connect; with a sink, start delivering node events to it (monitor processes)."""

    async def call(self, node: NodeAddress, envelope: CommandEnvelope) -> Reply:
        """Send a command and wait for its reply, at most `envelope.timeout_s` seconds."""

    async def close(self) -> None: ...


class AgentTransport(Protocol):
    """A node's end: serve the engine's commands, send events."""

    async def start(self, handler: CommandHandler) -> None:
        """Connect and start serving commands with `handler`."""

    async def publish(self, event: EventEnvelope) -> None:
        """Queue a sequenced event; delivered in order, at least once, retried until accepted."""

    async def publish_lossy(self, event: EventEnvelope) -> None:
        """Send a stats event now if possible; dropped rather than queued behind others."""

    async def close(self) -> None: ...
