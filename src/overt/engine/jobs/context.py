"""What a job's logical unit works with (its job, steps, the database and the nodes),
and what a unit is: how one kind of job runs, and what it undoes when it fails."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import fencing
from overt.engine.db.database import Database
from overt.engine.db.tables import Job, Step, utcnow
from overt.engine.jobs.kinds import JobSpec
from overt.engine.model.status import JobStatus, StepType
from overt.engine.nodes import NodeClient
from overt.engine.secrets import SecretBox

log = logging.getLogger(__name__)


@dataclass
class JobServices:
    """What handlers may use besides the database (built once by the bootstrap)."""

    nodes: NodeClient
    settings: Any  # EngineSettings
    registry: Any = None  # overt.engine.enrollment.registry.Registry, for enrollment jobs
    bootstrap: Any = None  # overt.engine.enrollment.unenrolled_node.UnenrolledNodeClient
    changes: Any = None  # overt.engine.jobs.observe.ObservedChanges, with a monitor in-process
    jobs: Any = None  # services.jobs.JobSubmitter (wakes the worker) for jobs that submit jobs
    # The in-process monitor's `resync_soon`: a job that committed `needs_resync` says so,
    # and the host's state is read back at once rather than at the monitor's next tick.
    resync_soon: Callable[[], None] = lambda: None
    # Runs a fence agent's action (`engine.fencing.run`); the fast lane's simulated BMCs
    # stand in for it there.
    fence_agent: Callable[..., Awaitable[str]] = fencing.run
    # The engine's secret box (CHAP, fence agent and cloud-init passwords); None: the
    # one of `settings.data_dir`, as the engine makes it.
    secrets: SecretBox | None = None

    def secret_box(self) -> SecretBox:
        """The box the engine's secrets are opened with."""
        return self.secrets if self.secrets is not None else SecretBox(self.settings.data_dir)


class JobContext:
    def __init__(self, job: Job, db: Database, services: JobServices) -> None:
        self.job = job
        self.db = db
        self.services = services
        self.nodes = services.nodes

    def key(self, name: str) -> str:
        """An idempotency key for one command of this job, stable across retries."""
        return f"{self.job.id}:{name}"

    def ctime(self) -> str:
        """When the job was submitted, in whole seconds since the epoch: what a volume it
        makes records as its CTIME. The same at every retry, since a command resent under
        its idempotency key must be the same command (a clock read would differ)."""
        return str(int(self.job.start_time.timestamp()))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self.db.transaction() as session:
            yield session

    @asynccontextmanager
    async def step(self, description: str, *, host_id: uuid.UUID | None = None,
                   kind: StepType = StepType.EXECUTING) -> AsyncIterator[Step]:
        """Record a step: visible at /jobs/ID/steps while it runs, closed when it ends."""
        async with self.db.transaction() as session:
            number = (await session.execute(
                select(func.count()).select_from(Step).where(Step.job_id == self.job.id)
            )).scalar_one() + 1
            step = Step(job_id=self.job.id, number=number, description=description,
                        type=kind.value, host_id=host_id)
            session.add(step)
        try:
            yield step
        except BaseException:
            await self._close_step(step.id, JobStatus.FAILED)
            raise
        await self._close_step(step.id, JobStatus.FINISHED)

    async def update_step(self, step_id: uuid.UUID, *, description: str | None = None,
                          progress: int | None = None) -> None:
        """Show how far a running step is (oVirt's step `progress`, a percentage)."""
        async with self.db.transaction() as session:
            step = await session.get(Step, step_id)
            if step is not None:
                if description is not None:
                    step.description = description
                if progress is not None:
                    step.progress = max(0, min(100, progress))

    async def follow_step(self, step_id: uuid.UUID, title: str, running: asyncio.Future[Any],
                          read: Callable[[], Awaitable[tuple[str, int] | None]], *,
                          interval_s: float) -> None:
        """Until `running` ends: every `interval_s`, what `read` says of it (a text and a
        percentage; None: nothing to show) into the step as "TITLE: text". A reading that
        fails is skipped (the work's own reply says how it ended)."""
        while True:
            done, _ = await asyncio.wait({running}, timeout=interval_s)
            if done:
                return
            try:
                reading = await read()
            except Exception as exc:
                log.debug("the progress of %s was not read: %s", title, exc)
                continue
            if reading is not None and not running.done():
                text, percent = reading
                await self.update_step(step_id, description=f"{title}: {text}",
                                       progress=percent)

    async def _close_step(self, step_id: uuid.UUID, status: JobStatus) -> None:
        async with self.db.transaction() as session:
            step = await session.get(Step, step_id)
            if step is not None:
                step.status, step.end_time = status, utcnow()


S = TypeVar("S", bound=JobSpec)


async def _nothing_to_undo(_session: AsyncSession, _ctx: JobContext, _spec: Any,
                           _message: str) -> None:
    return None


@dataclass(frozen=True)
class Unit(Generic[S]):
    """How one kind of job runs (`run`, its steps) and what it undoes when it has failed
    for good (`compensate`, in the transaction that records the failure and releases the
    job's locks, so nobody acts on a half-undone object)."""

    run: Callable[[JobContext, S], Coroutine[Any, Any, dict[str, Any] | None]]
    compensate: Callable[[AsyncSession, JobContext, S, str], Awaitable[None]] = \
        _nothing_to_undo
