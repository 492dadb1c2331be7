"""Submitting jobs from the service layer, so the worker picks them up at once."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.database import Database
from overt.engine.db.tables import Job
from overt.engine.jobs import queue
from overt.engine.jobs.kinds import JobSpec
from overt.engine.model.errors import Conflict, Unavailable


class JobSubmitter:
    """Records jobs and wakes this process's worker (other processes poll)."""

    def __init__(self, wakeup: asyncio.Event | None = None) -> None:
        self.wakeup = wakeup

    async def submit(self, session: AsyncSession, spec: JobSpec, *, description: str,
                     owner_id: uuid.UUID | None = None, correlation_id: str | None = None,
                     max_attempts: int | None = None) -> Job:
        """Record a job of `spec`'s kind with the locks it declares (see `queue.submit`)."""
        job = await queue.submit(session, spec, description=description, owner_id=owner_id,
                                 correlation_id=correlation_id, max_attempts=max_attempts)
        if self.wakeup is not None:
            # Wake this process's worker as soon as the job is committed (others poll).
            wakeup, loop = self.wakeup, asyncio.get_running_loop()
            event.listen(session.sync_session, "after_commit",
                         lambda _session: loop.call_soon_threadsafe(wakeup.set), once=True)
        return job


async def wait_for_job(db: Database, job_id: uuid.UUID, *, timeout_s: float,
                       what: str) -> Job:
    """Wait (polling the job's row) until a job ends; its failure becomes a Conflict.

    For the few actions whose answer needs the job's result (console tickets). The
    caller's transaction must have committed the job first.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        async with db.transaction() as session:
            job = await session.get(Job, job_id)
        if job is None:
            raise Conflict(f"{what} failed: its job {job_id} is gone")
        if job.state == "done":
            return job
        if job.state == "failed":
            raise Conflict(f"{what} failed: {job.error}")
        if loop.time() > deadline:
            raise Unavailable(f"{what} did not finish within {timeout_s:.0f} s (job {job_id} "
                              "is still waiting): is an engine worker running?")
        await asyncio.sleep(0.1)
