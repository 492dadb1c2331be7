"""The job table as a queue: submit with locks, claim atomically, finish, retry with backoff.

Claiming uses `SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL and a
compare-and-set update on SQLite (which serialises writers). A running job holds
a lease that its worker renews; when a worker dies the lease lapses and another
worker (or the restarted one) claims the job again, so no job stays stuck.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.database import Database
from overt.engine.db.tables import Job, Lock, Step, utcnow
from overt.engine.jobs import kinds
from overt.engine.jobs.kinds import JobSpec
from overt.engine.model.errors import Conflict
from overt.engine.model.status import JobStatus, VmStatus

LEASE = dt.timedelta(seconds=15)
MAX_BACKOFF_S = 60.0


async def submit(
    session: AsyncSession,
    spec: JobSpec,
    *,
    description: str,
    owner_id: uuid.UUID | None = None,
    correlation_id: str | None = None,
    max_attempts: int | None = None,
) -> Job:
    """Record a job of `spec`'s kind and take the locks it declares, in the caller's
    transaction, in the fixed order of lock levels.

    A lock held by another job makes this raise Conflict naming that job, so two
    conflicting actions never run at once and the second is refused at once.
    """
    job = Job(id=uuid.uuid4(), action=spec.kind, description=description,
              params=kinds.payload(spec), vm_id=spec.vm(), host_id=spec.host(),
              owner_id=owner_id, correlation_id=correlation_id,
              max_attempts=max_attempts or spec.max_attempts)
    session.add(job)
    await session.flush()
    for resource_type, resource_id in kinds.ordered(spec.locks()):
        holder = (await session.execute(
            select(Job).join(Lock, Lock.job_id == Job.id)
            .where(Lock.resource_type == resource_type, Lock.resource_id == resource_id)
        )).scalar_one_or_none()
        if holder is not None:
            raise Conflict(f"the {resource_type.replace('_', ' ')} is locked by job "
                           f"{holder.id} ({holder.description}); try again when it has finished")
        session.add(Lock(resource_type=resource_type, resource_id=resource_id, job_id=job.id))
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("the object is locked by another job that just started; try again "
                       "when it has finished") from None
    return job


def _claimable(now: dt.datetime) -> Any:
    return or_(
        (Job.state == "queued") & (Job.not_before <= now),
        (Job.state == "running") & (Job.lease_until < now),
    )


async def claim(db: Database, worker: str) -> Job | None:
    """Take the next job that is due (or whose worker's lease lapsed), or None."""
    now = utcnow()
    async with db.transaction() as session:
        if db.is_sqlite:
            candidate = (await session.execute(
                select(Job.id).where(_claimable(now)).order_by(Job.not_before).limit(1)
            )).scalar_one_or_none()
            if candidate is None:
                return None
            result = await session.execute(
                update(Job).where(Job.id == candidate, _claimable(now))
                .values(state="running", claimed_by=worker, lease_until=now + LEASE,
                        attempts=Job.attempts + 1)
                .execution_options(synchronize_session=False))
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            job = await session.get(Job, candidate, populate_existing=True)
        else:
            job = (await session.execute(
                select(Job).where(_claimable(now)).order_by(Job.not_before).limit(1)
                .with_for_update(skip_locked=True)
            )).scalar_one_or_none()
            if job is None:
                return None
            job.state, job.claimed_by, job.lease_until = "running", worker, now + LEASE
            job.attempts += 1
        return job


async def renew_lease(db: Database, job_id: uuid.UUID, worker: str) -> bool:
    """Extend the lease; False when the job is no longer ours (it was reclaimed)."""
    async with db.transaction() as session:
        result = await session.execute(
            update(Job).where(Job.id == job_id, Job.claimed_by == worker, Job.state == "running")
            .values(lease_until=utcnow() + LEASE).execution_options(synchronize_session=False))
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def _release(session: AsyncSession, job_id: uuid.UUID) -> None:
    await session.execute(delete(Lock).where(Lock.job_id == job_id))


async def finish(session: AsyncSession, job: Job, *, result: dict[str, Any] | None = None) -> None:
    job.state, job.status, job.end_time = "done", JobStatus.FINISHED, utcnow()
    job.result = result or {}
    job.claimed_by, job.lease_until = None, None
    await _release(session, job.id)
    await _close_steps(session, job.id, JobStatus.FINISHED)


async def fail(session: AsyncSession, job: Job, message: str) -> None:
    job.state, job.status, job.end_time = "failed", JobStatus.FAILED, utcnow()
    job.error = message
    job.claimed_by, job.lease_until = None, None
    await _release(session, job.id)
    await _close_steps(session, job.id, JobStatus.FAILED)


async def retry_later(session: AsyncSession, job: Job, message: str,
                      *, max_delay_s: float = MAX_BACKOFF_S) -> None:
    delay = min(MAX_BACKOFF_S, max_delay_s, 2.0 ** job.attempts)
    job.state, job.error = "queued", message
    job.not_before = utcnow() + dt.timedelta(seconds=delay)
    job.claimed_by, job.lease_until = None, None


async def release(session: AsyncSession, job_id: uuid.UUID, resource_type: str,
                  resource_id: uuid.UUID) -> None:
    """Give up one lock before the job ends (its work on that object is done)."""
    await session.execute(delete(Lock).where(
        Lock.job_id == job_id, Lock.resource_type == resource_type,
        Lock.resource_id == resource_id))


async def release_on_end(session: AsyncSession, vm_id: uuid.UUID, status: VmStatus) -> None:
    """The monitor observed a VM where the job holding it leads it (a start's `up`, a stop's
    `down`, a suspend's `suspended`): the VM is free from this commit on, when users see it so.
    The job then only records its outcome; it writes nothing more on the VM."""
    holder = (await session.execute(
        select(Lock.job_id, Job.action).join(Job, Job.id == Lock.job_id)
        .where(Lock.resource_type == "vm", Lock.resource_id == vm_id))).first()
    if holder is None:
        return
    spec = kinds.KINDS.get(holder.action)
    if spec is not None and issubclass(spec, kinds.VmJob) and spec.ends_as is status:
        await release(session, holder.job_id, "vm", vm_id)


async def _close_steps(session: AsyncSession, job_id: uuid.UUID, status: JobStatus) -> None:
    await session.execute(
        update(Step).where(Step.job_id == job_id, Step.status == JobStatus.STARTED)
        .values(status=status.value, end_time=utcnow())
        .execution_options(synchronize_session=False))


async def locked_by(session: AsyncSession, resource_type: str, resource_id: uuid.UUID
                    ) -> uuid.UUID | None:
    """The job holding a lock on the object, if any."""
    return (await session.execute(
        select(Lock.job_id).where(Lock.resource_type == resource_type,
                                  Lock.resource_id == resource_id))).scalar_one_or_none()


async def store_spec(session: AsyncSession, job_id: uuid.UUID, spec: JobSpec) -> None:
    """Keep a job's changed arguments (a value to reuse on retry, a secret dropped)."""
    job = await session.get(Job, job_id)
    if job is not None:
        job.params = kinds.payload(spec)
