"""A job waits for what the monitor observes instead of writing it.

The monitor is the one writer of a VM's observed status. A job acts on the node, then
waits (reading the database) until the node's own lifecycle event, applied by the
monitor, shows the status the job expects; the host is never resynchronised for it.
A job that stops waiting (the monitor is far behind, or not running) is retried: its
commands carry idempotency keys, so the retry only waits again.

Where the monitor runs in the worker's process (`overt demo`, `overt engine`), it says
when it has committed news (`ObservedChanges`) and a waiting job looks at once; a
worker of its own polls, every 5 ms at first and at most every 250 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Collection

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Vm
from overt.engine.jobs import queue
from overt.engine.jobs.context import JobContext
from overt.engine.jobs.errors import JobFailed, RetryLater
from overt.engine.model.status import VmStatus
from overt.engine.queries import lookup

OBSERVE_TIMEOUT_S = 120.0
_FIRST_POLL_S, _LAST_POLL_S = 0.005, 0.25


class ObservedChanges:
    """The monitor's word, within one process, that it has committed news from nodes."""

    def __init__(self) -> None:
        self._news = asyncio.Event()

    def changed(self) -> None:
        """Wake everyone waiting now (later waiters wait for the next news)."""
        self._news.set()
        self._news = asyncio.Event()

    async def wait(self, timeout_s: float) -> None:
        """Return at the next news, or after `timeout_s`."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._news.wait()


Settle = Callable[[AsyncSession, Vm], Awaitable[None]]


async def observed_vm(ctx: JobContext, vm_id: uuid.UUID, expected: Collection[VmStatus], *,
                      passing: Collection[VmStatus], settle: Settle | None = None,
                      timeout_s: float = OBSERVE_TIMEOUT_S) -> None:
    """Wait until the monitor has the VM in one of the `expected` statuses; while its
    status is one of `passing` (on the way), keep waiting; any other status fails the job
    with what happened.

    In the transaction that sees it, the job's last writes on the VM are made (`settle`)
    and its lock on the VM is released: the VM shown in its new status is free for the
    next action at once, not when the job's own bookkeeping ends. A job that ends the
    VM (`VmJob.ends_as`) finds its lock already released by the monitor, in the
    transaction that recorded the end, and has no `settle`: the VM may already be
    another job's (or removed)."""
    loop = asyncio.get_running_loop()
    deadline, delay = loop.time() + timeout_s, _FIRST_POLL_S
    while True:
        async with ctx.transaction() as session:
            found = await session.get(Vm, vm_id, populate_existing=True)
            if found is None and VmStatus.DOWN in expected:
                # An external VM the monitor forgot once its domain was gone: it is down.
                await queue.release(session, ctx.job.id, "vm", vm_id)
                return
            vm = found if found is not None else await lookup.get(session, Vm, vm_id)
            status = VmStatus(vm.status)
            holds = await queue.locked_by(session, "vm", vm_id) == ctx.job.id
            if status in expected or not holds:  # not held: the monitor saw the end
                if settle is not None:
                    await settle(session, vm)
                await queue.release(session, ctx.job.id, "vm", vm_id)
                return
        if status not in passing:
            raise JobFailed(f"VM {vm.name} is {status.value.replace('_', ' ')}, not "
                            f"{_either(expected)}, as its host reports")
        if loop.time() > deadline:
            raise RetryLater(f"the host's report that VM {vm.name} is {_either(expected)} has not "
                             f"reached the engine's monitor within {timeout_s:.0f} s")
        changes = ctx.services.changes
        if changes is not None:
            await changes.wait(delay)
        else:
            await asyncio.sleep(delay)
        delay = min(delay * 2, _LAST_POLL_S)


def _either(statuses: Collection[VmStatus]) -> str:
    return " or ".join(sorted(s.value.replace("_", " ") for s in statuses))
