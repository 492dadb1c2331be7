"""Node events received over HTTPS (direct mode) wait in the database for the monitor.

The gateway (in the API process) stores each event before it acknowledges it, so an
accepted event survives any crash; the monitor (maybe another process) applies
them in arrival order, which per node is sequence order.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import delete, select

from overt.engine.db.database import Database
from overt.engine.db.tables import NodeEventInbox
from overt.protocol import EventEnvelope, ProtocolViolation, decode_event

log = logging.getLogger(__name__)


class InboxSink:
    """The gateway's EventSink in direct mode: store, then acknowledge."""

    def __init__(self, db: Database, wakeup: asyncio.Event | None = None) -> None:
        self.db = db
        self.wakeup = wakeup

    async def __call__(self, envelope: EventEnvelope) -> None:
        async with self.db.transaction() as session:
            session.add(NodeEventInbox(host_uuid=envelope.host_uuid, boot_id=envelope.boot_id,
                                       seq=envelope.seq, payload=envelope.model_dump_json()))
        if self.wakeup is not None:
            self.wakeup.set()


async def take_batch(db: Database, limit: int = 200) -> list[tuple[int, EventEnvelope | None]]:
    async with db.transaction() as session:
        rows = (await session.execute(select(NodeEventInbox.id, NodeEventInbox.payload)
                                      .order_by(NodeEventInbox.id).limit(limit))).all()
    batch: list[tuple[int, EventEnvelope | None]] = []
    for row in rows:
        try:
            batch.append((row.id, decode_event(row.payload)))
        except ProtocolViolation as exc:
            log.error("dropping stored node event %d: %s", row.id, exc)
            batch.append((row.id, None))
    return batch


async def forget(db: Database, up_to: int) -> None:
    async with db.transaction() as session:
        await session.execute(delete(NodeEventInbox).where(NodeEventInbox.id <= up_to))
