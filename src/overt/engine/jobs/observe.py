"""A job waits for what the monitor observes instead of writing it.

The monitor is the one writer of a VM's observed status. A job acts on the node, then
waits (reading the database) until the node's own lifecycle event, applied by the
monitor, shows the status the job expects; the host is never resynchronised for it.
A job that stops waiting (the monitor is far behind, or not running) is retried: its
commands carry idempotency keys, so the retry only waits again.

The monitors say when they have committed news of a VM (`ObservedChanges`): in their own
process by a call, to other processes through PostgreSQL's NOTIFY
(`db.observed_news`); a waiting job looks at once, and otherwise every 0.25-1 s. A worker
that hears no monitor (SQLite without one in its process) polls, every 5 ms at first and
at most every 250 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Vm
from overt.engine.jobs import queue
from overt.engine.jobs.context import JobContext
from overt.engine.jobs.errors import JobFailed, RetryLater
from overt.engine.model.status import VmStatus
from overt.engine.queries import lookup

OBSERVE_TIMEOUT_S = 120.0
_FIRST_POLL_S, _LAST_POLL_S = 0.005, 0.25  # no word from a monitor: reading is all there is
# With the monitors' word, reading again only catches what no monitor announces (a host
# found lost marks its VMs unknown) and news missed while a listener reconnected.
_FIRST_LOOK_S, _LAST_LOOK_S = 0.25, 1.0


class ObservedChanges:
    """The monitor's word, within one process, that it has committed news from nodes: a
    VM's own event wakes only the jobs waiting on that VM (a burst of starts is not a
    burst of every waiter reading its VM again at each event); news that may touch any VM
    (a host's state applied whole) wakes them all."""

    def __init__(self) -> None:
        self._news: dict[uuid.UUID, asyncio.Event] = {}

    def changed(self, vm_ids: Iterable[uuid.UUID] | None = None) -> None:
        """Wake the jobs waiting on `vm_ids` now, or everyone (None); later waiters wait
        for the next news."""
        if vm_ids is None:
            news, self._news = list(self._news.values()), {}
        else:
            news = [e for e in (self._news.pop(vm_id, None) for vm_id in vm_ids) if e]
        for event in news:
            event.set()

    def watch(self, vm_id: uuid.UUID) -> asyncio.Event:
        """Set at the VM's next news: taken before a job reads the VM, so news committed
        between its reading and its waiting is not missed."""
        news = self._news.get(vm_id)
        if news is None:
            news = self._news[vm_id] = asyncio.Event()
        return news

    async def wait(self, vm_id: uuid.UUID, timeout_s: float,
                   news: asyncio.Event | None = None) -> None:
        """Return at the VM's next news (since `news` was taken), or after `timeout_s`."""
        news = news or self.watch(vm_id)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await news.wait()


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
    changes: ObservedChanges | None = ctx.services.changes
    first, last = (_FIRST_LOOK_S, _LAST_LOOK_S) if changes is not None \
        else (_FIRST_POLL_S, _LAST_POLL_S)
    deadline, delay = loop.time() + timeout_s, first
    while True:
        news = changes.watch(vm_id) if changes is not None else None
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
        if changes is not None:
            await changes.wait(vm_id, delay, news)
        else:
            await asyncio.sleep(delay)
        delay = min(delay * 2, last)


def _either(statuses: Collection[VmStatus]) -> str:
    return " or ".join(sorted(s.value.replace("_", " ") for s in statuses))
