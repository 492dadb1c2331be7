"""VM jobs that end, pause or remove a VM: stop, shutdown, reboot, suspend, remove.

A job asks the node and then waits (with a timeout) for the monitor to observe the
outcome it expects; it never writes a VM's status from the node's reply. The only
statuses a job writes are the ones that say it is at work (`powering_down`,
`saving_state`), before it acts, and a suspended VM that a stop makes down (it runs
nowhere: no node can report it).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Host, Vm
from overt.engine.jobs import queue
from overt.engine.jobs.context import JobContext, Unit
from overt.engine.jobs.errors import JobFailed, RetryLater
from overt.engine.jobs.handlers import storage_domains as shared
from overt.engine.jobs.kinds import (
    JobSpec,
    RebootVm,
    RemoveVm,
    ShutdownVm,
    StopVm,
    SuspendVm,
    VmJob,
)
from overt.engine.jobs.observe import OBSERVE_TIMEOUT_S, observed_vm
from overt.engine.model.node_states import ON_HOST
from overt.engine.model.status import HostStatus, VmStatus
from overt.engine.nodes import NodeCommandFailed
from overt.engine.queries import lookup
from overt.engine.queries.shared_storage import is_shared, recount_extents
from overt.engine.queries.snapshot_chains import all_volumes, volume_location
from overt.engine.queries.vm_spec import memory_image_dir, vm_disks
from overt.protocol import ErrorCode
from overt.protocol.commands import Empty, VmDestroy, VmReboot, VmSave, VmShutdown, VolumeDelete
from overt.protocol.host import VmStatusReport

# How long a guest has to shut down before its node powers it off.
SHUTDOWN_TIMEOUT_S = 120.0
SAVE_TIMEOUT_S = 600.0
_DOWN = frozenset({VmStatus.DOWN})


async def running_host(ctx: JobContext, vm: Vm) -> Host:
    if vm.host_id is None:
        raise JobFailed(f"VM {vm.name} is not running on any host")
    async with ctx.transaction() as session:
        host = await lookup.get(session, Host, vm.host_id)
    if host.status in (HostStatus.NON_RESPONSIVE, HostStatus.CONNECTING):
        raise RetryLater(f"host {host.name} is {host.status}")
    return host


async def _ask_host_to_report(ctx: JobContext, host: Host) -> None:
    """The node runs no such VM, yet the engine shows it there: the monitor reads the
    host's full state, and settles the VM from what the node really runs."""
    async with ctx.transaction() as session:
        fresh = await lookup.get(session, Host, host.id)
        fresh.needs_resync = True


async def _end_vm(ctx: JobContext, vm: Vm, host: Host, command: VmDestroy | VmShutdown, *,
                  step: str, timeout_s: float) -> None:
    """Send the command that ends the VM on its host; an absent VM is left to the monitor."""
    async with ctx.step(step, host_id=host.id):
        try:
            await ctx.nodes.call(host, command, VmStatusReport, key=ctx.key(command.name),
                                 timeout_s=timeout_s)
        except NodeCommandFailed as exc:
            if exc.error.code is not ErrorCode.NO_SUCH_VM:
                raise
            await _ask_host_to_report(ctx, host)


async def _held_vm(ctx: JobContext, vm_id: uuid.UUID, *, at_work: VmStatus | None = None,
                   **before: object) -> Vm | None:
    """The VM the job still holds, with what it writes before acting (`before`, and the
    status saying it is at work for a VM that is up); None when the monitor has already
    seen the end the job waits for (a retried job): there is nothing left to do."""
    async with ctx.transaction() as session:
        if await queue.locked_by(session, "vm", vm_id) != ctx.job.id:
            return None
        vm = await lookup.get(session, Vm, vm_id, for_update=True)
        if at_work is not None and vm.status == VmStatus.UP:
            vm.status = at_work
        for name, value in before.items():
            setattr(vm, name, value)
        return vm


async def stop_vm(ctx: JobContext, spec: StopVm) -> dict[str, Any]:
    """Power off at once (libvirt destroy); a suspended VM just forgets its saved state."""
    vm = await _held_vm(ctx, spec.vm_id, stop_reason=spec.reason)
    if vm is None:
        return {}
    if vm.host_id is None:
        await _forget_saved_memory(ctx, vm)
        async with ctx.transaction() as session:
            vm = await lookup.get(session, Vm, spec.vm_id)
            # It ran nowhere: its saved memory was all there was of it.
            vm.status, vm.saved_state_path, vm.saved_state_host_id = (VmStatus.DOWN,
                                                                      None, None)
            await queue.release(session, ctx.job.id, "vm", vm.id)
        await _record(ctx, vm, f"VM {vm.name} powered off", audit.VM_STOPPED)
        return {}
    host = await running_host(ctx, vm)
    await _end_vm(ctx, vm, host, VmDestroy(vm_id=spec.vm_id), timeout_s=60,
                  step=f"Stopping VM {vm.name} on host {host.name}")
    await observed_vm(ctx, spec.vm_id, _DOWN, passing=ON_HOST)
    await _record(ctx, vm, f"VM {vm.name} powered off", audit.VM_STOPPED)
    return {}


async def _record(ctx: JobContext, vm: Vm, what: str, code: int,
                  host_id: uuid.UUID | None = None) -> None:
    """The job's outcome in the audit log (the VM may be another job's by now)."""
    async with ctx.transaction() as session:
        audit.record(session, what, code=code, vm_id=vm.id, host_id=host_id,
                     job_id=ctx.job.id, user_id=ctx.job.owner_id)


async def _forget_saved_memory(ctx: JobContext, vm: Vm) -> None:
    if not (vm.saved_state_path and vm.saved_state_host_id):
        return
    async with ctx.transaction() as session:
        saved_on = await lookup.get(session, Host, vm.saved_state_host_id)
    async with ctx.step(f"Discarding the saved memory of VM {vm.name}", host_id=saved_on.id):
        await _delete_volume(ctx, saved_on, vm.saved_state_path, key="discard-memory")


async def shutdown_vm(ctx: JobContext, spec: ShutdownVm) -> dict[str, Any]:
    """ACPI shutdown; the node powers the VM off if the guest has not stopped in time."""
    vm = await _held_vm(ctx, spec.vm_id, at_work=VmStatus.POWERING_DOWN,
                        stop_reason=spec.reason)
    if vm is None:
        return {}
    host = await running_host(ctx, vm)
    await _end_vm(ctx, vm, host, VmShutdown(vm_id=spec.vm_id, timeout_s=SHUTDOWN_TIMEOUT_S),
                  timeout_s=SHUTDOWN_TIMEOUT_S + 30,
                  step=f"Shutting down VM {vm.name} on host {host.name}")
    await observed_vm(ctx, spec.vm_id, _DOWN, passing=ON_HOST,
                      timeout_s=SHUTDOWN_TIMEOUT_S + OBSERVE_TIMEOUT_S)
    await _record(ctx, vm, f"VM {vm.name} was shut down", audit.VM_SHUTDOWN)
    return {}


Compensation = Callable[[AsyncSession, JobContext, VmJob, str], Awaitable[None]]


def undo_at_work(at_work: VmStatus) -> Compensation:
    """The compensation of an action that failed while the VM showed it at work
    (`at_work`): the VM still runs, so that status is undone, the monitor reads the host
    again to confirm, and the user's wish falls back to what the VM is."""
    async def compensate(session: AsyncSession, ctx: JobContext, spec: VmJob,
                         message: str) -> None:
        vm = await session.get(Vm, spec.vm_id)
        if vm is None:
            return
        if vm.status == at_work.value:
            vm.status = VmStatus.UP
            await _resync_host_of(session, vm)
        if vm.status != VmStatus.SUSPENDED:  # no memory was saved for it
            vm.saved_state_path, vm.saved_state_host_id = None, None
        want_what_is(vm)
    return compensate


def want_what_is(vm: Vm) -> None:
    """After a failed action the user's wish falls back to what the VM observably is."""
    status = VmStatus(vm.status)
    vm.desired_status = (VmStatus.UP if status in ON_HOST else
                         VmStatus.SUSPENDED if status is VmStatus.SUSPENDED else
                         VmStatus.DOWN).value


async def reboot_vm(ctx: JobContext, spec: RebootVm) -> dict[str, Any]:
    """The guest reboots and keeps running: the VM stays up throughout, nothing to wait for."""
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, spec.vm_id)
    host = await running_host(ctx, vm)
    async with ctx.step(f"Rebooting VM {vm.name} on host {host.name}", host_id=host.id):
        await ctx.nodes.call(host, VmReboot(vm_id=spec.vm_id), VmStatusReport,
                             key=ctx.key("reboot"))
    async with ctx.transaction() as session:
        audit.record(session, f"VM {vm.name} was rebooted", code=audit.VM_REBOOT, vm_id=vm.id,
                     job_id=ctx.job.id, user_id=ctx.job.owner_id)
    return {}


async def suspend_vm(ctx: JobContext, spec: SuspendVm) -> dict[str, Any]:
    """oVirt's suspend: the VM's memory goes to the host's local storage and the VM stops.
    Where the memory goes is recorded before the node saves it (the compensation forgets
    it if the save fails), so the monitor's `suspended` leaves a VM ready to resume."""
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, spec.vm_id)
        host = await running_host(ctx, vm)
        path = f"{await memory_image_dir(session, vm, host)}/saved/{spec.vm_id}.memory"
    held = await _held_vm(ctx, spec.vm_id, at_work=VmStatus.SAVING_STATE,
                          saved_state_path=path, saved_state_host_id=host.id)
    if held is None:
        return {"path": path}
    async with ctx.step(f"Saving the memory of VM {vm.name} on host {host.name}",
                        host_id=host.id):
        await ctx.nodes.call(host, VmSave(vm_id=spec.vm_id, path=path), VmStatusReport,
                             key=ctx.key("save"), timeout_s=SAVE_TIMEOUT_S)
    await observed_vm(ctx, spec.vm_id, {VmStatus.SUSPENDED}, passing=ON_HOST)
    await _record(ctx, vm, f"VM {vm.name} was suspended to disk on host {host.name}",
                  audit.VM_SUSPENDED, host.id)
    return {"path": path}


async def _resync_host_of(session: AsyncSession, vm: Vm) -> None:
    if vm.host_id is not None:
        host = await session.get(Host, vm.host_id)
        if host is not None:
            host.needs_resync = True


async def remove_vm(ctx: JobContext, spec: RemoveVm) -> dict[str, Any]:
    """Delete the VM's disks (unless detach_only) on their storage, then the VM."""
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, spec.vm_id)
        disks = [(d, sd) for _a, d, sd in await vm_disks(session, spec.vm_id)]
    if not spec.detach_only:
        for disk, domain in disks:
            if is_shared(domain):
                await shared.remove_volume(ctx, domain, disk, key=f"delete-{disk.id}",
                                           going=[d.id for d, _sd in disks])
                continue
            if domain.host_id is None:
                continue
            async with ctx.transaction() as session:
                host = await lookup.get(session, Host, domain.host_id)
            async with ctx.transaction() as session:
                volumes = await all_volumes(session, disk)
            async with ctx.step(f"Removing disk {disk.name}", host_id=host.id):
                for number, image_path in enumerate(volumes):  # its snapshots' too
                    suffix = f"-{number}" if number else ""
                    await _delete_volume(ctx, host, volume_location(domain, image_path),
                                         key=f"delete-{disk.id}{suffix}")
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, spec.vm_id)
        for disk, domain in disks:
            found = await session.get(type(disk), disk.id)
            if found is not None and not spec.detach_only:
                await session.delete(found)
                if is_shared(domain):  # with the row (and its snapshots'): freed once
                    await recount_extents(session, domain.id)
        audit.record(session, f"VM {vm.name} was removed", code=audit.VM_REMOVED,
                     job_id=ctx.job.id, user_id=ctx.job.owner_id)
        await session.delete(vm)
    return {}


async def _delete_volume(ctx: JobContext, host: Host, path: str, *, key: str) -> None:
    try:
        await ctx.nodes.call(host, VolumeDelete(path=path), Empty, key=ctx.key(key))
    except NodeCommandFailed as exc:
        if exc.error.code is not ErrorCode.IMAGE_MISSING:
            raise


UNITS: dict[type[JobSpec], Unit[Any]] = {
    StopVm: Unit(stop_vm, compensate=undo_at_work(VmStatus.POWERING_DOWN)),
    ShutdownVm: Unit(shutdown_vm, compensate=undo_at_work(VmStatus.POWERING_DOWN)),
    RebootVm: Unit(reboot_vm),
    SuspendVm: Unit(suspend_vm, compensate=undo_at_work(VmStatus.SAVING_STATE)),
    RemoveVm: Unit(remove_vm),
}
