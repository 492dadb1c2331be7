"""The job queue on real databases: workers compete for jobs and never run one twice."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from overt.config import EngineSettings
from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID, seed
from overt.engine.db.tables import AuditEvent, Cluster, Job, Lock, Vm, utcnow
from overt.engine.jobs import queue
from overt.engine.jobs.context import JobContext, JobServices
from overt.engine.jobs.handlers import UNITS
from overt.engine.jobs.kinds import RebootVm, StartVm, StopVm
from overt.engine.jobs.worker import Worker
from overt.engine.model.errors import Conflict
from overt.engine.nodes import NodeClient
from tests.support.no_nodes import NoNodes


async def _vms(db: Database, count: int) -> list[uuid.UUID]:
    await seed(db)
    async with db.transaction() as session:
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert cluster is not None
        ids = [uuid.uuid4() for _ in range(count)]
        tag = uuid.uuid4().hex[:6]
        for n, vm_id in enumerate(ids):
            session.add(Vm(id=vm_id, name=f"q-{tag}-{n}", cluster_id=cluster.id,
                           template_id=BLANK_TEMPLATE_ID, memory_mib=64, status="down"))
    return ids


async def test_competing_workers_run_each_job_exactly_once(db_url: str) -> None:
    db = Database(db_url)
    vm_ids = await _vms(db, 40)
    async with db.transaction() as session:
        jobs = [await queue.submit(session, StopVm(vm_id=vm_id), description=f"Stopping {vm_id}")
                for vm_id in vm_ids]
    job_ids = {job.id for job in jobs}
    services = JobServices(nodes=NodeClient(NoNodes()), settings=EngineSettings())
    databases = [Database(db_url) for _ in range(3)]
    workers = [Worker(d, services, UNITS, poll_interval=0.05)
               for d in databases]
    runners = [asyncio.create_task(w.run()) for w in workers]
    try:
        async with asyncio.timeout(120):
            while True:
                async with db.transaction() as session:
                    states = (await session.execute(select(Job.state).where(
                        Job.id.in_(job_ids)))).scalars().all()
                if all(state == "done" for state in states):
                    break
                await asyncio.sleep(0.1)
    finally:
        for worker in workers:
            await worker.stop()
        await asyncio.gather(*runners, return_exceptions=True)
    async with db.transaction() as session:
        runs = Counter((await session.execute(select(AuditEvent.job_id).where(
            AuditEvent.job_id.in_(job_ids)))).scalars())
        attempts = (await session.execute(select(Job.attempts).where(Job.id.in_(job_ids)))
                    ).scalars().all()
        left_locks = (await session.execute(select(Lock).where(Lock.job_id.in_(job_ids)))).all()
    assert set(runs) == job_ids and set(runs.values()) == {1}
    assert set(attempts) == {1}
    assert left_locks == []
    for d in [db, *databases]:
        await d.dispose()


async def test_a_locked_object_refuses_a_second_job(db_url: str) -> None:
    db = Database(db_url)
    (vm_id,) = await _vms(db, 1)
    async with db.transaction() as session:
        first = await queue.submit(session, StopVm(vm_id=vm_id), description="first")
    with pytest.raises(Conflict, match=f"locked by job {first.id} \\(first\\)"):
        async with db.transaction() as session:
            await queue.submit(session, StartVm(vm_id=vm_id), description="second")
    async with db.transaction() as session:
        assert [j.description for j in (await session.execute(
            select(Job).where(Job.vm_id == vm_id, Job.description.in_(["first", "second"]))
        )).scalars()] == ["first"]
    await db.dispose()


async def test_a_lapsed_lease_lets_another_worker_take_the_job(db_url: str) -> None:
    db = Database(db_url)
    (vm_id,) = await _vms(db, 1)
    async with db.transaction() as session:
        job = await queue.submit(session, RebootVm(vm_id=vm_id), description="lease")
    claimed = await queue.claim(db, "crashed-worker")
    assert claimed is not None and claimed.id == job.id
    assert await queue.claim(db, "other") is None  # held while the lease runs
    async with db.transaction() as session:
        row = await session.get(Job, job.id)
        assert row is not None
        row.lease_until = row.start_time  # the crashed worker stopped renewing long ago
    again = await queue.claim(db, "other")
    assert again is not None and again.id == job.id
    assert again.claimed_by == "other" and again.attempts == 2
    await db.dispose()


async def test_a_retry_waits_longer_each_time_up_to_the_handlers_cap(db_url: str) -> None:
    db = Database(db_url)
    (vm_id,) = await _vms(db, 1)
    async with db.transaction() as session:
        job = await queue.submit(session, RebootVm(vm_id=vm_id), description="backoff")
    delays = []
    for cap in (queue.MAX_BACKOFF_S, queue.MAX_BACKOFF_S, queue.MAX_BACKOFF_S, 5.0):
        async with db.transaction() as session:
            row = await session.get(Job, job.id)
            assert row is not None
            row.attempts += 1
            before = utcnow()
            await queue.retry_later(session, row, "not yet", max_delay_s=cap)
            not_before = row.not_before
            delays.append(round((not_before - before).total_seconds()))
    assert delays == [2, 4, 8, 5]
    await db.dispose()


class _FailingOverDatabase(Database):
    """A database that is away (connections refused) for a while when told to."""

    away_until = 0.0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        if time.monotonic() < self.away_until:
            raise OperationalError("BEGIN", None, ConnectionRefusedError("the primary is gone"))
        async with super().transaction() as session:
            yield session


async def test_a_job_that_ends_while_the_database_fails_over_is_recorded_once_it_is_back(
        db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    db = _FailingOverDatabase(db_url)
    [vm_id] = await _vms(db, 1)
    async with db.transaction() as session:
        job = await queue.submit(session, StopVm(vm_id=vm_id), description="Stopping it")
    stop = UNITS[StopVm]

    async def run_then_lose_the_database(ctx: JobContext, spec: StopVm) -> dict[str, Any] | None:
        result = await stop.run(ctx, spec)
        db.away_until = time.monotonic() + 1.5  # the primary is lost as the job ends
        return result
    units = {**UNITS, StopVm: dataclasses.replace(stop, run=run_then_lose_the_database)}
    worker = Worker(db, JobServices(nodes=NodeClient(NoNodes()), settings=EngineSettings()),
                    units, poll_interval=0.05)
    runner = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(30):
            while True:
                if time.monotonic() >= db.away_until:
                    async with db.transaction() as session:
                        fresh = await session.get(Job, job.id)
                        assert fresh is not None
                        if fresh.state == "done":
                            break
                await asyncio.sleep(0.1)
    finally:
        await worker.stop()
        await asyncio.gather(runner, return_exceptions=True)
        await db.dispose()
    assert fresh.attempts == 1  # recorded, not run again
    assert any("recording its outcome again" in r.getMessage() for r in caplog.records)


async def test_a_worker_stopped_while_it_looks_for_a_job_ends_at_once(db: Database) -> None:
    """`stop` while the worker's claim is under way: the worker ends as soon as the claim
    returns, instead of waiting out its idle poll (here an hour)."""
    worker = Worker(db, JobServices(nodes=NodeClient(NoNodes()), settings=EngineSettings()),
                    UNITS, poll_interval=3600)
    claiming = asyncio.Event()
    claim = queue.claim

    async def claim_then_tell(*args: Any, **kwargs: Any) -> Job | None:
        claiming.set()
        await asyncio.sleep(0.05)  # `stop` comes now, while the claim runs
        return await claim(*args, **kwargs)

    runner = asyncio.create_task(worker.run())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(queue, "claim", claim_then_tell)
        await asyncio.wait_for(claiming.wait(), 10)
        await worker.stop()
        await asyncio.wait_for(runner, 10)
