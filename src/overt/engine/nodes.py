"""The engine's side of talking to nodes: typed commands over whichever transport runs.

Jobs and the monitor call `NodeClient.call(host, command)`; the reply comes back as the
result model the command declares (`VmStart` -> `VmStatusReport`), typed so, and node
errors as NodeCommandFailed carrying the node's message.
"""

from __future__ import annotations

from typing import TypeVar, cast

from pydantic import BaseModel

from overt.bus.base import EngineTransport, NodeAddress
from overt.engine.db.tables import Host
from overt.protocol import CommandEnvelope, ErrorCode, NodeError
from overt.protocol.commands import Command, Returns

R = TypeVar("R", bound=BaseModel)


class NodeCommandFailed(Exception):
    """A node answered a command with an error; the message is the node's, for the admin."""

    def __init__(self, host_name: str, error: NodeError) -> None:
        super().__init__(f"{host_name}: {error.message}")
        self.error = error

    @property
    def transient(self) -> bool:
        return self.error.transient


def address_of(host: Host) -> NodeAddress:
    if host.host_uuid is None:
        raise ValueError(f"host {host.name} has not enrolled yet")
    return NodeAddress(host_uuid=host.host_uuid, url=f"https://{host.address}:{host.port}",
                       certificate_fingerprint=host.certificate_fingerprint)


class NodeClient:
    def __init__(self, transport: EngineTransport) -> None:
        self.transport = transport

    async def call(self, host: Host, command: Returns[R], expect: type[R] | None = None, *,
                   key: str | None = None, timeout_s: float = 60.0) -> R:
        """Send `command` to `host`; return its reply as the command's declared result model.

        `expect`, when given, must be that model (kept for callers that still name it).
        `key` (the job id and step) makes a resent command act only once on the node.
        """
        result = command.result
        if expect is not None and expect is not result:
            raise TypeError(f"{type(command).__name__} returns {result.__name__}, "
                            f"not {expect.__name__}")
        envelope = CommandEnvelope(command=cast(Command, command), idempotency_key=key,
                                   timeout_s=timeout_s)
        reply = await self.transport.call(address_of(host), envelope)
        if not reply.ok:
            error = reply.error or NodeError(code=ErrorCode.INTERNAL,
                                             message="the node gave no reason")
            raise NodeCommandFailed(host.name, error)
        return result.model_validate(reply.result or {})
