"""Outgoing live migrations over libvirt: the handover, steered while it runs as its
policy says, and its figures read back from the destination."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import libvirt

from overt.node.errors import NodeFailure
from overt.node.hypervisor.domain_xml import with_display_address
from overt.node.hypervisor.executor import BlockingCalls
from overt.node.hypervisor.libvirt_errors import node_failure
from overt.node.hypervisor.libvirt_migration import (
    ConvergenceSteps,
    migration_flags,
    migration_params,
    outcome_of,
    progress_of,
)
from overt.protocol import ErrorCode
from overt.protocol.migration import MigrationOutcome, MigrationPolicy, MigrationProgress

log = logging.getLogger(__name__)
T = TypeVar("T")

WATCH_S = 0.25  # how often a running migration's job is read to steer it


class OutgoingMigrations:
    """The migrations leaving this node, each steered by its policy while it runs."""

    def __init__(self, calls: BlockingCalls, *, max_at_once: int = 2) -> None:
        self.calls = calls
        self._steps: dict[uuid.UUID, ConvergenceSteps] = {}  # in flight, by VM id
        self._turns = asyncio.Semaphore(max_at_once)  # the others wait their turn
        self._waiting: dict[uuid.UUID, asyncio.Event] = {}  # set: cancelled while waiting

    async def _call(self, action: str, func: Callable[..., T], *args: object) -> T:
        try:
            return await self.calls.run(func, *args)
        except libvirt.libvirtError as exc:
            raise node_failure(exc, action) from None

    async def run(self, dom: libvirt.virDomain, vm_id: uuid.UUID, destination_uri: str, *,
                  migration_uri: str | None, display_address: str | None,
                  timeout_s: float, policy: MigrationPolicy) -> MigrationOutcome:
        """This agent opens the destination's libvirtd and libvirt hands the domain over
        (`virsh migrate --live` does the same); QEMU's stream goes to `migration_uri`. A
        persistent domain moves its definition along. The policy's flags go with the call;
        its max downtime and post-copy switch are made while the job runs. Past
        `timeout_s` the migration is aborted and the VM keeps running here. At most
        `max_at_once` migrations leave at once; the others wait their turn first."""
        if not await self._wait_turn(vm_id):
            raise NodeFailure(ErrorCode.INVALID_STATE, f"the migration of VM {dom.name()} was "
                              "cancelled before it began; the VM keeps running here")
        try:
            return await self._run(dom, vm_id, destination_uri, migration_uri=migration_uri,
                                   display_address=display_address, timeout_s=timeout_s,
                                   policy=policy)
        finally:
            self._turns.release()

    async def _wait_turn(self, vm_id: uuid.UUID) -> bool:
        """Wait for a free turn (True, then held), unless the VM's migration is cancelled
        first (False, nothing held)."""
        cancelled = self._waiting[vm_id] = asyncio.Event()
        turn = asyncio.ensure_future(self._turns.acquire())
        stop = asyncio.ensure_future(cancelled.wait())
        try:
            await asyncio.wait({turn, stop}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # this call was cancelled: hold nothing
            stop.cancel()
            turn.cancel()  # a turn given but not taken yet goes back (Semaphore.acquire)
            if turn.done() and not turn.cancelled():
                self._turns.release()
            raise
        finally:
            self._waiting.pop(vm_id, None)
        stop.cancel()
        if turn.done():
            if not cancelled.is_set():
                return True
            self._turns.release()
            return False
        turn.cancel()
        return False

    def cancel_waiting(self, vm_id: uuid.UUID) -> bool:
        """Cancel the VM's migration if it is still waiting for its turn (True): it never
        begins. False when none waits (it runs, or there is none)."""
        cancelled = self._waiting.get(vm_id)
        if cancelled is None:
            return False
        cancelled.set()
        return True

    async def _run(self, dom: libvirt.virDomain, vm_id: uuid.UUID, destination_uri: str, *,
                   migration_uri: str | None, display_address: str | None,
                   timeout_s: float, policy: MigrationPolicy) -> MigrationOutcome:
        name = dom.name()
        destination = await self._call(f"connecting to {destination_uri}", libvirt.open,
                                       destination_uri)
        steps = self._steps[vm_id] = ConvergenceSteps(policy)
        began = time.monotonic()
        try:
            persistent = await self._call(f"reading VM {name}", dom.isPersistent)
            xml = None
            if display_address:  # the console listens on the destination's address
                xml = with_display_address(await self._call(
                    f"reading VM {name}", dom.XMLDesc,
                    libvirt.VIR_DOMAIN_XML_SECURE | libvirt.VIR_DOMAIN_XML_MIGRATABLE),
                    display_address)
            params = migration_params(policy, migration_uri=migration_uri, destination_xml=xml)
            # It reads the job only while there is something to steer: each reading is a
            # `query-migrate` QEMU answers while it copies.
            watcher = asyncio.create_task(self._converge(dom, steps))
            try:
                async with asyncio.timeout(timeout_s):
                    await self._call(f"migrating VM {name} to {destination_uri}", dom.migrate3,
                                     destination, params,
                                     migration_flags(policy, persistent=bool(persistent)))
            except TimeoutError:
                with contextlib.suppress(libvirt.libvirtError):
                    await self.calls.run(dom.abortJob)
                raise NodeFailure(ErrorCode.TIMEOUT, f"VM {name} did not migrate within "
                                  f"{timeout_s:g} s; the migration was cancelled") from None
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            return outcome_of(await self._completed_stats(destination, vm_id),
                              measured_ms=round((time.monotonic() - began) * 1000),
                              post_copy=steps.post_copy, live=policy.live)
        finally:
            self._steps.pop(vm_id, None)
            with contextlib.suppress(libvirt.libvirtError):
                await self.calls.run(destination.close)

    async def progress(self, dom: libvirt.virDomain, vm_id: uuid.UUID) -> MigrationProgress:
        """The VM's outgoing migration job as libvirt reports it now."""
        stats = await self._call(f"reading the migration of VM {dom.name()}", dom.jobStats, 0)
        steps = self._steps.get(vm_id)
        return progress_of(stats, post_copy=steps is not None and steps.post_copy)

    async def _converge(self, dom: libvirt.virDomain, steps: ConvergenceSteps) -> None:
        """While the migration runs: its max downtime, then the post-copy switch; then
        nothing more to do."""
        while steps.steers:
            await asyncio.sleep(WATCH_S)
            try:
                progress = progress_of(await self.calls.run(dom.jobStats, 0))
                downtime = steps.set_downtime(progress)
                if downtime is not None:
                    await self.calls.run(dom.migrateSetMaxDowntime, downtime, 0)
                if steps.start_post_copy(progress):
                    log.info("VM switches to post-copy migration", extra={
                        "vm": dom.name(), "iteration": progress.iteration})
                    await self.calls.run(dom.migrateStartPostCopy, 0)
            except libvirt.libvirtError as exc:  # the job ended meanwhile: nothing to steer
                log.debug("migration watch: %s", exc)

    async def _completed_stats(self, destination: libvirt.virConnect,
                               vm_id: uuid.UUID) -> dict[str, object]:
        """The destination's figures of the migration it completed (downtime included), as
        `virsh domjobinfo --completed` shows them there; empty when it kept none."""
        try:
            dom = await self.calls.run(destination.lookupByUUIDString, str(vm_id))
            stats: dict[str, object] = await self.calls.run(
                dom.jobStats, libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
            return stats
        except libvirt.libvirtError as exc:
            log.warning("the destination kept no figures of the migration: %s", exc)
            return {}
