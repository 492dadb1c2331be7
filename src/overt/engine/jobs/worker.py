"""The worker: claims due jobs, runs their handlers, renews leases, retries with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from overt.bus.base import TransportError
from overt.engine import audit
from overt.engine.db.database import Database
from overt.engine.db.tables import Job
from overt.engine.jobs import queue
from overt.engine.jobs.context import FailureHook, Handler, JobContext, JobServices
from overt.engine.jobs.errors import JobFailed, RetryLater
from overt.engine.model.errors import OvertError
from overt.engine.model.status import LogSeverity
from overt.engine.nodes import NodeCommandFailed

log = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    """Runs up to `concurrency` jobs at once; several workers may share one database."""

    def __init__(self, db: Database, services: JobServices, handlers: dict[str, Handler], *,
                 failure_hooks: dict[str, FailureHook] | None = None, concurrency: int = 8,
                 poll_interval: float = 0.5, wakeup: asyncio.Event | None = None) -> None:
        self.db = db
        self.services = services
        self.handlers = handlers
        self.failure_hooks = failure_hooks or {}
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
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_interval):
                await self.wakeup.wait()

    async def stop(self) -> None:
        """Stop claiming; running jobs are abandoned and their leases lapse for a successor."""
        self.wakeup.set()
        await self._abandon_running()

    async def _abandon_running(self) -> None:
        self._stopping.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _execute(self, job: Job) -> None:
        try:
            handler = self.handlers.get(job.action)
            log.info("job %s (%s) started, attempt %d", job.id, job.description, job.attempts)
            if handler is None:
                await self._fail(job, f"no handler for job action {job.action!r}")
                return
            context = JobContext(job, self.db, self.services)
            runner: asyncio.Task[dict[str, Any] | None] = asyncio.create_task(handler(context))
            lease = asyncio.create_task(self._keep_lease(job, runner))
            try:
                result = await runner
            except asyncio.CancelledError:
                if self._stopping.is_set():
                    raise
                log.warning("job %s lost its lease to another worker; abandoned here", job.id)
                return
            except RetryLater as exc:
                await self._retry(job, str(exc) or type(exc).__name__,
                                  max_delay_s=exc.max_delay_s)
                return
            except (TransportError, OperationalError) as exc:
                await self._retry(job, str(exc) or type(exc).__name__)
                return
            except NodeCommandFailed as exc:
                if exc.transient:
                    await self._retry(job, str(exc))
                else:
                    await self._fail(job, str(exc))
                return
            except (JobFailed, OvertError) as exc:
                await self._fail(job, getattr(exc, "detail", None) or str(exc))
                return
            except Exception:
                log.exception("job %s (%s) failed unexpectedly", job.id, job.action)
                await self._fail(job, "the job failed unexpectedly; the engine log has details")
                return
            finally:
                lease.cancel()
                await asyncio.gather(lease, return_exceptions=True)
            async with self.db.transaction() as session:
                fresh = await session.get(Job, job.id)
                if fresh is not None and fresh.claimed_by == self.name:
                    await queue.finish(session, fresh, result=result)
            log.info("job %s (%s) finished", job.id, job.description)
        finally:
            self.concurrency.release()

    async def _keep_lease(self, job: Job, runner: asyncio.Task[object]) -> None:
        interval = queue.LEASE.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            try:
                still_ours = await queue.renew_lease(self.db, job.id, self.name)
            except OperationalError:
                continue
            if not still_ours:
                runner.cancel()
                return

    async def _retry(self, job: Job, message: str, *, max_delay_s: float | None = None) -> None:
        async with self.db.transaction() as session:
            fresh = await session.get(Job, job.id)
            if fresh is None or fresh.claimed_by != self.name:
                return
            if fresh.attempts < fresh.max_attempts:
                await queue.retry_later(session, fresh, message, max_delay_s=max_delay_s
                                        if max_delay_s is not None else queue.MAX_BACKOFF_S)
                log.warning("job %s will be retried: %s", job.id, message)
                return
        await self._fail(job, f"{message} (gave up after {job.attempts} attempts)")

    async def _fail(self, job: Job, message: str) -> None:
        async with self.db.transaction() as session:
            fresh = await session.get(Job, job.id)
            if fresh is None or fresh.claimed_by != self.name:
                return
            await self._record_failure(session, fresh, message)
        hook = self.failure_hooks.get(job.action)
        if hook is not None:
            try:
                await hook(JobContext(job, self.db, self.services), message)
            except Exception:
                log.exception("cleaning up after failed job %s did not work", job.id)

    async def _record_failure(self, session: AsyncSession, job: Job, message: str) -> None:
        await queue.fail(session, job, message)
        audit.record(session, f"{job.description} failed: {message}", code=audit.JOB_FAILED,
                     severity=LogSeverity.ERROR, vm_id=job.vm_id, host_id=job.host_id,
                     job_id=job.id, user_id=job.owner_id, correlation_id=job.correlation_id)
        log.error("job %s (%s) failed: %s", job.id, job.description, message)
