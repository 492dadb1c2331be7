"""Submitting jobs from the service layer, so the worker picks them up at once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Job
from overt.engine.jobs import queue


class JobSubmitter:
    """Records jobs and wakes this process's worker (other processes poll)."""

    def __init__(self, wakeup: asyncio.Event | None = None) -> None:
        self.wakeup = wakeup

    async def submit(self, session: AsyncSession, *, action: str, description: str,
                     params: dict[str, Any], locks: Iterable[tuple[str, uuid.UUID]] = (),
                     vm_id: uuid.UUID | None = None, host_id: uuid.UUID | None = None,
                     owner_id: uuid.UUID | None = None, correlation_id: str | None = None,
                     max_attempts: int = 5) -> Job:
        job = await queue.submit(session, action=action, description=description, params=params,
                                 locks=locks, vm_id=vm_id, host_id=host_id, owner_id=owner_id,
                                 correlation_id=correlation_id, max_attempts=max_attempts)
        if self.wakeup is not None:
            # The transaction commits after this returns; the worker polls again shortly.
            asyncio.get_running_loop().call_later(0.05, self.wakeup.set)
        return job
