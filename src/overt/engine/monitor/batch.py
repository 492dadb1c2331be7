"""Events that many nodes' lanes hand in at about the same moment go to the database together.

A monitor takes a thousand nodes' heartbeats a few hundred a second; one transaction
each would cost the database and the monitor's own CPU far more than the work. The
batcher applies whatever arrived while the previous batch was being written, in one
transaction, and tells each caller its own outcome once that transaction is committed:
an event is still acknowledged only once it is recorded. At low load a batch is one
event and nothing waits.

A resync's full state goes through the same queue (`resync`): it is applied after the
events queued before it, in the batch that holds its host's row for them, so a resync
and the host's events never meet on the row (no busy refusal, no wait). The batcher is
the one writer of hosts' event positions in its process, one transaction at a time,
and its transactions only read and write: nothing else is awaited inside one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass

from overt.engine.db.database import Database
from overt.engine.monitor.apply import ApplyLater, Gaps, Outcome, Resync, apply_batch
from overt.protocol import EventEnvelope
from overt.protocol.host import HostState

log = logging.getLogger(__name__)

MAX_BATCH = 500


@dataclass
class _Item:
    envelope: EventEnvelope
    gaps: Gaps
    done: asyncio.Future[Outcome]


@dataclass
class _ResyncItem:
    resync: Resync
    done: asyncio.Future[Outcome]


class EventBatcher:
    """`apply` waits until the event is committed with others (or refused, or failed)."""

    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH) -> None:
        self.db = db
        self.max_batch = max_batch
        self._pending: list[_Item | _ResyncItem] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0

    async def apply(self, envelope: EventEnvelope, gaps: Gaps) -> Outcome:
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue(_Item(envelope, gaps, done))
        return await done

    async def resync(self, host_uuid: uuid.UUID, state: HostState) -> Outcome:
        """Apply a host's full state after the events queued before it: APPLIED, STALE
        (newer events were applied: the host is marked to be asked again) or UNKNOWN_HOST;
        raises HostBusy when another process's transaction holds the host's row."""
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue(_ResyncItem(Resync(host_uuid, state), done))
        return await done

    def _queue(self, item: _Item | _ResyncItem) -> None:
        if self._closed:  # a delivery still on its way: no batch task outlives close()
            item.done.set_exception(RuntimeError("the monitor is stopping"))
            return
        self._pending.append(item)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="event batches")

    async def close(self) -> None:
        self._closed = True
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
                events, resyncs = self._take()
                await self._apply(events, resyncs)

    def _take(self) -> tuple[list[_Item], list[_ResyncItem]]:
        """The next batch, in queue order: events, then the resyncs queued after them (an
        event queued after a resync waits for the next batch: `apply_batch` applies the
        resyncs last)."""
        events: list[_Item] = []
        resyncs: list[_ResyncItem] = []
        taken = 0
        for item in self._pending[:self.max_batch]:
            if isinstance(item, _ResyncItem):
                resyncs.append(item)
            elif resyncs:
                break
            else:
                events.append(item)
            taken += 1
        del self._pending[:taken]
        return events, resyncs

    async def _apply(self, events: list[_Item], resyncs: list[_ResyncItem]) -> None:
        try:
            async with self.db.transaction() as session:
                results, resynced = await apply_batch(
                    session, [(i.envelope, i.gaps) for i in events],
                    [i.resync for i in resyncs], skip_busy=True)
        except Exception as exc:  # every event of the batch is given again by its lane
            for done in [i.done for i in events] + [i.done for i in resyncs]:
                if not done.done():
                    done.set_exception(exc)
            return
        self.batches += 1
        outcomes: list[tuple[asyncio.Future[Outcome], Outcome | ApplyLater]] = [
            *((i.done, r) for i, r in zip(events, results, strict=True)),
            *((i.done, r) for i, r in zip(resyncs, resynced, strict=True))]
        for done, result in outcomes:
            if done.done():
                continue
            if isinstance(result, ApplyLater):
                done.set_exception(result)
            else:
                done.set_result(result)
