"""The portal's change feed: changes made by other processes (any database writer) reach
listeners within a second; new stats samples only to the pages showing their graphs."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import select

from overt.engine import audit
from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import Cluster, StatsSample, Vm, utcnow
from overt.engine.jobs import queue
from overt.engine.jobs.kinds import StopVm
from overt.engine.web.live import Change, ChangeFeed


async def _next(queue_: asyncio.Queue[Change], kind: str) -> Change:
    async with asyncio.timeout(1.5):
        while True:
            change = await queue_.get()
            if change.kind == kind:
                return change


async def test_vm_job_and_audit_changes_reach_a_listener(db: Database) -> None:
    # A second Database object stands for another process (worker, monitor) writing.
    writer = Database(db.url)
    feed = ChangeFeed(db, interval_s=0.1)
    try:
        async with writer.transaction() as session:
            cluster = (await session.execute(select(Cluster))).scalars().first()
            assert cluster is not None
            vm = Vm(id=uuid.uuid4(), name="live-1", cluster_id=cluster.id,
                    template_id=BLANK_TEMPLATE_ID, memory_mib=256)
            session.add(vm)
        async with feed.listen() as changes:
            await asyncio.sleep(0.3)  # the feed's first snapshot: no changes from it
            assert changes.empty()
            async with writer.transaction() as session:
                found = await session.get(Vm, vm.id)
                assert found is not None
                found.status = "up"
            change = await _next(changes, "vm")
            assert change.data == {"id": str(vm.id), "name": "live-1", "status": "up",
                                   "host_id": None, "old_host_id": None, "new": False}
            async with writer.transaction() as session:
                job = await queue.submit(session, StopVm(vm_id=vm.id),
                                         description="Stopping VM")
            change = await _next(changes, "job")
            assert change.data["id"] == str(job.id) and change.data["vm_id"] == str(vm.id)
            async with writer.transaction() as session:
                audit.record(session, "VM live-1 is up", vm_id=vm.id)
            change = await _next(changes, "audit")
            assert change.data["description"] == "VM live-1 is up"
            assert "event: audit\ndata: {" in change.sse()
            async with writer.transaction() as session:
                found = await session.get(Vm, vm.id)
                await session.delete(found)
            change = await _next(changes, "vm")
            assert change.data["status"] == "removed"
    finally:
        await feed.close()
        await writer.dispose()


async def test_new_samples_reach_only_the_listeners_showing_their_graphs(db: Database) -> None:
    writer = Database(db.url)
    feed = ChangeFeed(db, interval_s=0.1)
    watched, other = uuid.uuid4(), uuid.uuid4()

    async def sample(subject_id: uuid.UUID, resolution_s: int = 0) -> None:
        async with writer.transaction() as session:
            session.add(StatsSample(subject_type="vm", subject_id=subject_id, time=utcnow(),
                                    resolution_s=resolution_s, cpu_percent=1.0))

    try:
        async with feed.listen(frozenset({str(watched)})) as graph_page, \
                feed.listen() as list_page:
            await asyncio.sleep(0.3)
            await sample(other)
            await sample(watched, resolution_s=60)  # a roll-up of old samples: not news
            await sample(watched)
            change = await _next(graph_page, "stats")
            assert change.data == {"subject": "vm", "id": str(watched)}
            await asyncio.sleep(0.3)
            for queue_ in (graph_page, list_page):
                while not queue_.empty():
                    assert queue_.get_nowait().kind != "stats"
    finally:
        await feed.close()
        await writer.dispose()
