"""The monitor's in-process word to waiting jobs: a VM's news wakes the jobs waiting on
that VM only; a host's whole state wakes them all."""

from __future__ import annotations

import asyncio
import uuid

from overt.engine.jobs.observe import ObservedChanges


async def _woken(changes: ObservedChanges, vm_id: uuid.UUID, news: list[uuid.UUID] | None,
                 ) -> bool:
    """Whether a job waiting on `vm_id` wakes at `news` (it would otherwise wait 10 s)."""
    waiter = asyncio.create_task(changes.wait(vm_id, 10.0))
    await asyncio.sleep(0)  # it waits now
    changes.changed(news)
    await asyncio.sleep(0.01)
    woken = waiter.done()
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    return woken


async def test_a_vms_news_wakes_the_jobs_waiting_on_it_only() -> None:
    changes = ObservedChanges()
    mine, other = uuid.uuid4(), uuid.uuid4()
    assert await _woken(changes, mine, [mine])
    assert await _woken(changes, mine, [other, mine])
    assert not await _woken(changes, mine, [other])
    assert not await _woken(changes, mine, [])


async def test_news_of_any_vm_wakes_every_waiting_job() -> None:
    changes = ObservedChanges()
    first, second = uuid.uuid4(), uuid.uuid4()
    waiters = [asyncio.create_task(changes.wait(vm_id, 10.0)) for vm_id in (first, second)]
    await asyncio.sleep(0)
    changes.changed()
    await asyncio.wait_for(asyncio.gather(*waiters), 1.0)


async def test_a_job_that_starts_waiting_after_the_news_waits_for_the_next() -> None:
    changes = ObservedChanges()
    vm_id = uuid.uuid4()
    changes.changed([vm_id])
    began = asyncio.get_running_loop().time()
    await changes.wait(vm_id, 0.05)
    assert asyncio.get_running_loop().time() - began >= 0.05
