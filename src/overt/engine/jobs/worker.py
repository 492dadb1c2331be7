"""The worker: claims due jobs, runs them through their kind's unit, renews leases,
retries with backoff, and on failure compensates (one lifecycle for every kind).

Every exception a job raises becomes "retry later" or "failed" in one place,
`outcome_of`; a job that failed for good runs its unit's compensation in the
transaction that records the failure and releases its locks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import OperationalError

from overt.bus.base import TransportError
from overt.engine import audit
from overt.engine.db.availability import database_unavailable
from overt.engine.db.database import Database
from overt.engine.db.tables import Job
from overt.engine.jobs import kinds, queue
from overt.engine.jobs.context import JobContext, JobServices, Unit
from overt.engine.jobs.errors import JobFailed, RetryLater
from overt.engine.jobs.kinds import JobSpec, UnreadableJob
from overt.engine.model.errors import OvertError
from overt.engine.model.status import LogSeverity
from overt.engine.nodes import NodeCommandFailed

log = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

# While the database fails over, a job's outcome is recorded again this often.
RECORD_RETRY_S = 1.0


@dataclass(frozen=True)
class Outcome:
    """How an attempt that raised ends: run again later, or failed for good."""

    retry: bool
    message: str
    max_delay_s: float | None = None


def outcome_of(exc: Exception) -> Outcome:
    """The one mapping of a job's exceptions to retry or failure, with the message the
    administrator sees."""
    match exc:
        case RetryLater():
            return Outcome(True, str(exc) or type(exc).__name__, exc.max_delay_s)
        case TransportError() | OperationalError():
            return Outcome(True, str(exc) or type(exc).__name__)
        case NodeCommandFailed():
            return Outcome(exc.transient, str(exc))
        case OvertError():
            return Outcome(False, exc.detail or str(exc))
        case JobFailed() | UnreadableJob():
            return Outcome(False, str(exc))
    log.error("a job failed unexpectedly", exc_info=exc)
    return Outcome(False, "the job failed unexpectedly; the engine log has details")


class Worker:
    """Runs up to `concurrency` jobs at once; several workers may share one database."""

    def __init__(self, db: Database, services: JobServices,
                 units: Mapping[type[JobSpec], Unit[Any]], *, concurrency: int = 8,
                 poll_interval: float = 0.5, wakeup: asyncio.Event | None = None) -> None:
        self.db = db
        self.services = services
        self.units = units
        self.name = worker_name()
        self.concurrency = asyncio.Semaphore(concurrency)
        self.poll_interval = poll_interval
        self.wakeup = wakeup or asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        log.info("worker %s started", self.name)
        try:
            await self._claim_and_run()
        finally:
            # Cancelled or stopped: running jobs end here (their leases lapse for a
            # successor) rather than being left to the event loop's closing.
            await self._abandon_running()

    async def _claim_and_run(self) -> None:
        while not self._stopping.is_set():
            await self.concurrency.acquire()
            try:
                job = await queue.claim(self.db, self.name)
            except OperationalError as exc:
                log.warning("worker could not reach the database (%s); retrying", exc.orig)
                job = None
            if job is None:
                self.concurrency.release()
                await self._idle()
                continue
            task = asyncio.create_task(self._execute(job), name=f"job {job.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _idle(self) -> None:
        self.wakeup.clear()
        if self._stopping.is_set():
            return  # `stop` came while this worker claimed: its wake-up was just cleared
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_interval):
                await self.wakeup.wait()

    async def stop(self) -> None:
        """Stop claiming; running jobs are abandoned and their leases lapse for a successor."""
        self.wakeup.set()
        await self._abandon_running()

    async def _abandon_running(self) -> None:
        self._stopping.set()
        async with self.db.between_transactions():
            for task in list(self._tasks):
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _execute(self, job: Job) -> None:
        try:
            log.info("job %s (%s) started, attempt %d", job.id, job.description, job.attempts)
            try:
                spec = kinds.load(job)
            except UnreadableJob as exc:
                await self._fail(job, str(exc))
                return
            unit = self.units[type(spec)]
            context = JobContext(job, self.db, self.services)
            runner: asyncio.Task[dict[str, Any] | None] = asyncio.create_task(
                unit.run(context, spec))
            lease = asyncio.create_task(self._keep_lease(job, runner))
            try:
                result = await runner
            except asyncio.CancelledError:
                if self._stopping.is_set():
                    raise
                log.warning("job %s lost its lease to another worker; abandoned here", job.id)
                return
            except Exception as exc:  # every failure is mapped in one place: `outcome_of`
                outcome = outcome_of(exc)
                if outcome.retry:
                    await self._recording(job, lambda: self._retry(
                        job, outcome.message, spec, unit, max_delay_s=outcome.max_delay_s))
                else:
                    await self._recording(job, lambda: self._fail(job, outcome.message, spec,
                                                                  unit))
                return
            finally:
                async with self.db.between_transactions():
                    lease.cancel()
                await asyncio.gather(lease, return_exceptions=True)
            await self._recording(job, lambda: self._finish(job, result))
        finally:
            self.concurrency.release()

    async def _finish(self, job: Job, result: dict[str, Any] | None) -> None:
        async with self.db.transaction() as session:
            fresh = await session.get(Job, job.id)
            if fresh is None or fresh.claimed_by != self.name:
                return
            await queue.finish(session, fresh, result=result)
        log.info("job %s (%s) finished", job.id, job.description)

    async def _recording(self, job: Job, record: Callable[[], Awaitable[None]]) -> None:
        """Record a job's outcome, waiting out a database failover. Recording again is
        harmless: a job this worker no longer holds is left alone. Past the job's lease
        the job is given up here: another worker claims it and runs it again."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + queue.LEASE.total_seconds()
        while True:
            try:
                await record()
                return
            except Exception as exc:
                if not database_unavailable(exc):
                    log.exception("job %s: recording its outcome failed", job.id)
                    return
                if loop.time() >= deadline:
                    log.warning("job %s: the database stayed unavailable, its outcome is not "
                                "recorded; it runs again once its lease lapses", job.id)
                    return
                log.warning("job %s: the database is unavailable (%s); recording its outcome "
                            "again in %s s", job.id, type(exc).__name__, RECORD_RETRY_S)
                await asyncio.sleep(RECORD_RETRY_S)

    async def _keep_lease(self, job: Job, runner: asyncio.Task[object]) -> None:
        interval = queue.LEASE.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            try:
                still_ours = await queue.renew_lease(self.db, job.id, self.name)
            except OperationalError:
                continue
            if not still_ours:
                async with self.db.between_transactions():
                    runner.cancel()
                return

    async def _retry(self, job: Job, message: str, spec: JobSpec, unit: Unit[Any], *,
                     max_delay_s: float | None = None) -> None:
        async with self.db.transaction() as session:
            fresh = await session.get(Job, job.id)
            if fresh is None or fresh.claimed_by != self.name:
                return
            if fresh.attempts < fresh.max_attempts:
                await queue.retry_later(session, fresh, message, max_delay_s=max_delay_s
                                        if max_delay_s is not None else queue.MAX_BACKOFF_S)
                log.warning("job %s will be retried: %s", job.id, message)
                return
        await self._fail(job, f"{message} (gave up after {job.attempts} attempts)", spec, unit)

    async def _fail(self, job: Job, message: str, spec: JobSpec | None = None,
                    unit: Unit[Any] | None = None) -> None:
        """Record the failure, undo what the job left half-done and release its locks,
        in one transaction; a compensation that fails itself is logged, and the failure
        is recorded without it."""
        if spec is not None and unit is not None:
            try:
                await self._end_failed(job, message, spec, unit)
                return
            except Exception:
                log.exception("undoing what failed job %s left half-done did not work", job.id)
        await self._end_failed(job, message, None, None)

    async def _end_failed(self, job: Job, message: str, spec: JobSpec | None,
                          unit: Unit[Any] | None) -> None:
        async with self.db.transaction() as session:
            fresh = await session.get(Job, job.id)
            if fresh is None or fresh.claimed_by != self.name:
                return
            if spec is not None and unit is not None:
                await unit.compensate(session, JobContext(fresh, self.db, self.services), spec,
                                      message)
            await queue.fail(session, fresh, message)
            audit.record(session, f"{job.description} failed: {message}",
                         code=audit.JOB_FAILED, severity=LogSeverity.ERROR, vm_id=job.vm_id,
                         host_id=job.host_id, job_id=job.id, user_id=job.owner_id,
                         correlation_id=job.correlation_id)
        log.error("job %s (%s) failed: %s", job.id, job.description, message)
