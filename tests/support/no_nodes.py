"""An engine transport for API tests that enroll no node: every call finds no node."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import ovirtsdk4 as sdk

from overt.bus.base import EventSink, NodeAddress, NodeUnreachable
from overt.protocol import CommandEnvelope, Reply
from tests.support.engine import RunningEngine, start_engine


class NoNodes:
    async def start(self, sink: EventSink | None) -> None:
        return None

    async def call(self, node: NodeAddress, envelope: CommandEnvelope) -> Reply:
        raise NodeUnreachable(f"no node {node.host_uuid} in this test")

    async def close(self) -> None:
        return None


@contextlib.contextmanager
def engine_with_admin(data_dir: Path) -> Iterator[tuple[RunningEngine, sdk.Connection]]:
    """An engine that enrolls no node and the admin's SDK connection to it: the set-up of
    API tests about who may see and do what."""
    engine = start_engine(data_dir, transport=NoNodes())
    admin = engine.admin_connection()
    try:
        yield engine, admin
    finally:
        admin.close()
        engine.stop()
