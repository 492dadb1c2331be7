"""An engine transport for API tests that enroll no node: every call finds no node."""

from __future__ import annotations

from overt.bus.base import EventSink, NodeAddress, NodeUnreachable
from overt.protocol import CommandEnvelope, Reply


class NoNodes:
    async def start(self, sink: EventSink | None) -> None:
        return None

    async def call(self, node: NodeAddress, envelope: CommandEnvelope) -> Reply:
        raise NodeUnreachable(f"no node {node.host_uuid} in this test")

    async def close(self) -> None:
        return None
