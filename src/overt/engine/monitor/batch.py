"""Events that many nodes' lanes hand in at about the same moment go to the database together.

A monitor takes a thousand nodes' heartbeats a few hundred a second; one transaction
each would cost the database and the monitor's own CPU far more than the work. The
batcher applies whatever arrived while the previous batch was being written, in one
transaction, and tells each caller its own outcome once that transaction is committed:
an event is still acknowledged only once it is recorded. At low load a batch is one
event and nothing waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from overt.engine.db.database import Database
from overt.engine.monitor.apply import ApplyLater, Gaps, Outcome, apply_events
from overt.protocol import EventEnvelope

log = logging.getLogger(__name__)

MAX_BATCH = 500


@dataclass
class _Item:
    envelope: EventEnvelope
    gaps: Gaps
    done: asyncio.Future[Outcome]


class EventBatcher:
    """`apply` waits until the event is committed with others (or refused, or failed)."""

    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH) -> None:
        self.db = db
        self.max_batch = max_batch
        self._pending: list[_Item] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0

    async def apply(self, envelope: EventEnvelope, gaps: Gaps) -> Outcome:
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._pending.append(_Item(envelope, gaps, done))
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="event batches")
        return await done

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for item in self._pending:
            if not item.done.done():
                item.done.set_exception(RuntimeError("the monitor is stopping"))

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[:self.max_batch]
                del self._pending[:self.max_batch]
                await self._apply(batch)

    async def _apply(self, batch: list[_Item]) -> None:
        try:
            async with self.db.transaction() as session:
                results = await apply_events(session, [(i.envelope, i.gaps) for i in batch],
                                             skip_busy=True)
        except Exception as exc:  # every event of the batch is given again by its lane
            for item in batch:
                if not item.done.done():
                    item.done.set_exception(exc)
            return
        self.batches += 1
        for item, result in zip(batch, results, strict=True):
            if item.done.done():
                continue
            if isinstance(result, ApplyLater):
                item.done.set_exception(result)
            else:
                item.done.set_result(result)
