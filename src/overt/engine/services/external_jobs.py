"""External jobs (oVirt's): jobs a client records to show its own work, then ends or clears.

The worker never runs them: their queue `state` is `external`, which it does not claim.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Job, Step, User, utcnow
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.model.status import JobStatus, LogSeverity
from overt.engine.queries import lookup

EXTERNAL_STATE = "external"


async def add_external_job(session: AsyncSession, description: str | None,
                           auto_cleared: bool | None, user: User) -> Job:
    if not description or not description.strip():
        raise InvalidInput("job.description is required")
    job = Job(id=uuid.uuid4(), action="external", description=description.strip(), params={},
              state=EXTERNAL_STATE, status=JobStatus.STARTED, external=True,
              auto_cleared=True if auto_cleared is None else auto_cleared, owner_id=user.id)
    session.add(job)
    await session.flush()
    return job


async def _external(session: AsyncSession, job_id: uuid.UUID, verb: str) -> Job:
    job = await lookup.get(session, Job, job_id, for_update=True)
    if not job.external:
        raise Conflict(f"Cannot {verb} job {job.id}: it is run by the engine, not an external "
                       "job; it ends by itself when its work is done.")
    return job


async def end_job(session: AsyncSession, job_id: uuid.UUID, *, succeeded: bool,
                  user: User) -> Job:
    """End an external job (and its open steps) as finished or failed."""
    job = await _external(session, job_id, "end")
    if job.status != JobStatus.STARTED:
        raise Conflict(f"Cannot end job {job.id}: it has already ended ({job.status}).")
    status = JobStatus.FINISHED if succeeded else JobStatus.FAILED
    now = utcnow()
    job.status, job.end_time = status, now
    steps = await session.execute(select(Step).where(Step.job_id == job.id,
                                                     Step.status == JobStatus.STARTED))
    for step in steps.scalars():
        step.status, step.end_time = status, now
    audit.record(session, f"External job {job.description} was ended ({status}) by "
                 f"{user.user_name}", code=audit.JOB_ENDED, job_id=job.id, user_id=user.id,
                 severity=LogSeverity.NORMAL if succeeded else LogSeverity.WARNING)
    return job


async def clear_job(session: AsyncSession, job_id: uuid.UUID, user: User) -> Job:
    """Let the engine clear the job from the list once it has ended (oVirt's auto-clear)."""
    job = await _external(session, job_id, "clear")
    job.auto_cleared = True
    audit.record(session, f"External job {job.description} was marked to be cleared by "
                 f"{user.user_name}", code=audit.JOB_CLEARED, job_id=job.id, user_id=user.id)
    return job
