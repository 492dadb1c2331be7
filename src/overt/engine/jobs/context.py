"""What a job handler works with: its job, steps, the database and the nodes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.database import Database
from overt.engine.db.tables import Job, Step, utcnow
from overt.engine.model.status import JobStatus, StepType
from overt.engine.nodes import NodeClient


@dataclass
class JobServices:
    """What handlers may use besides the database (built once by the bootstrap)."""

    nodes: NodeClient
    settings: Any  # EngineSettings
    registry: Any = None  # overt.engine.enrollment.registry.Registry, for enrollment jobs
    bootstrap: Any = None  # overt.engine.enrollment.unenrolled_node.UnenrolledNodeClient
    changes: Any = None  # overt.engine.jobs.observe.ObservedChanges, with a monitor in-process


class JobContext:
    def __init__(self, job: Job, db: Database, services: JobServices) -> None:
        self.job = job
        self.db = db
        self.services = services
        self.nodes = services.nodes

    @property
    def params(self) -> dict[str, Any]:
        return self.job.params

    def uuid_param(self, name: str) -> uuid.UUID:
        return uuid.UUID(str(self.job.params[name]))

    def key(self, name: str) -> str:
        """An idempotency key for one command of this job, stable across retries."""
        return f"{self.job.id}:{name}"

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

    async def _close_step(self, step_id: uuid.UUID, status: JobStatus) -> None:
        async with self.db.transaction() as session:
            step = await session.get(Step, step_id)
            if step is not None:
                step.status, step.end_time = status.value, utcnow()


Handler = Callable[[JobContext], Coroutine[Any, Any, dict[str, Any] | None]]
# Runs once when a job has failed for good, to undo what the job left half-done.
FailureHook = Callable[[JobContext, str], Coroutine[Any, Any, None]]
