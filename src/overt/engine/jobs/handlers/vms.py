"""VM lifecycle jobs: start, stop, shutdown, reboot, suspend, remove; console tickets."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Host, Job, Vm, utcnow
from overt.engine.jobs.context import FailureHook, Handler, JobContext
from overt.engine.jobs.errors import JobFailed, RetryLater
from overt.engine.jobs.observe import observed_vm
from overt.engine.model.node_states import ON_HOST, vm_status_of
from overt.engine.model.status import HostStatus, LogSeverity, VmStatus
from overt.engine.nodes import NodeCommandFailed
from overt.engine.queries import lookup
from overt.engine.queries.vm_spec import (
    build_vm_spec,
    console_password,
    memory_image_dir,
    vm_disks,
)
from overt.protocol import ErrorCode
from overt.protocol.commands import (
    Empty,
    VmDestroy,
    VmReboot,
    VmSave,
    VmSetTicket,
    VmShutdown,
    VmStart,
    VmTicket,
    VolumeDelete,
)
from overt.protocol.host import VmState, VmStatusReport

log = logging.getLogger(__name__)

# Where a starting VM may be before the monitor sees it run (PAUSED: a paused VM resumed).
_LAUNCHING = frozenset({VmStatus.WAIT_FOR_LAUNCH, VmStatus.RESTORING_STATE, VmStatus.POWERING_UP,
                        VmStatus.PAUSED})


def _apply_report(vm: Vm, report: VmStatusReport) -> None:
    vm.status = vm_status_of(report.state).value
    vm.vnc_port = report.vnc_port
    if vm.status == VmStatus.DOWN.value:
        vm.host_id, vm.vnc_port, vm.stop_time = None, None, utcnow()


async def _running_host(ctx: JobContext, vm: Vm) -> Host:
    if vm.host_id is None:
        raise JobFailed(f"VM {vm.name} is not running on any host")
    async with ctx.transaction() as session:
        host = await lookup.get(session, Host, vm.host_id)
    if host.status in (HostStatus.NON_RESPONSIVE.value, HostStatus.CONNECTING.value):
        raise RetryLater(f"host {host.name} is {host.status}")
    return host


async def start_vm(ctx: JobContext) -> dict[str, Any]:
    """Start the VM on the host its submission reserved (placement happened there, once)."""
    vm_id = ctx.uuid_param("vm_id")
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, vm_id, for_update=True)
        if vm.status == VmStatus.UP.value and vm.host_id is not None:
            return {"host_id": str(vm.host_id)}  # a retried job whose start already happened
        if vm.host_id is None:
            raise JobFailed(f"VM {vm.name} has no host reserved for its start; start it again")
        job = await lookup.get(session, Job, ctx.job.id)
        if "vnc_password" not in job.params:  # kept for retries, which must send the same spec
            job.params = {**job.params, "vnc_password": console_password()}
        host = await lookup.get(session, Host, vm.host_id)
        # The console listens where the engine reaches the host, and only there.
        spec = await build_vm_spec(session, vm, vnc_password=job.params["vnc_password"],
                                   display_address=host.address)
        restore_from = vm.saved_state_path if vm.status == VmStatus.RESTORING_STATE.value \
            else None
    if host.status != HostStatus.UP.value:
        raise RetryLater(f"host {host.name}, reserved for VM {vm.name}, is {host.status}")
    async with ctx.step(f"Starting VM {vm.name} on host {host.name}", host_id=host.id):
        try:
            report = await ctx.nodes.call(
                host, VmStart(vm_id=vm_id, spec=spec, restore_from=restore_from),
                VmStatusReport, key=ctx.key("start"), timeout_s=180)
        except NodeCommandFailed as exc:
            if not exc.transient:
                await _start_failed(ctx, str(exc))
            raise
    async def started(session: AsyncSession, vm: Vm) -> None:
        vm.start_time, vm.desired_status = utcnow(), "up"
        vm.spec_version = spec.spec_version
        vm.saved_state_path, vm.saved_state_host_id = None, None
        await _forget_console_password(session, ctx)
        audit.record(session, f"VM {vm.name} started on host {host.name}", code=audit.VM_UP,
                     vm_id=vm.id, host_id=host.id, cluster_id=vm.cluster_id, job_id=ctx.job.id,
                     user_id=ctx.job.owner_id)
    expected = vm_status_of(report.state)
    # Running in any form counts (a restored guest may already be shutting down); a VM
    # started paused, or resumed from pause, must show it.
    reached = (ON_HOST - _LAUNCHING) | {expected} if expected is not VmStatus.UP else \
        ON_HOST - _LAUNCHING
    await observed_vm(ctx, vm_id, reached, passing=_LAUNCHING - reached, settle=started)
    return {"host_id": str(host.id)}


async def _forget_console_password(session: AsyncSession, ctx: JobContext) -> None:
    """The start's console password served only to make retries identical: drop it."""
    job = await session.get(Job, ctx.job.id)
    if job is not None and "vnc_password" in job.params:
        job.params = {k: v for k, v in job.params.items() if k != "vnc_password"}


async def _start_failed(ctx: JobContext, message: str) -> None:
    async with ctx.transaction() as session:
        await _forget_console_password(session, ctx)
        vm = await session.get(Vm, ctx.uuid_param("vm_id"))
        if vm is not None and vm.status == VmStatus.RESTORING_STATE.value:
            vm.status, vm.host_id = VmStatus.SUSPENDED.value, None
            audit.record(session, f"Failed to resume VM {vm.name}: {message}",
                         code=audit.VM_START_FAILED, severity=LogSeverity.ERROR, vm_id=vm.id,
                         job_id=ctx.job.id)
        elif vm is not None and vm.status in (VmStatus.WAIT_FOR_LAUNCH.value,
                                              VmStatus.POWERING_UP.value):
            vm.status, vm.host_id, vm.desired_status = VmStatus.DOWN.value, None, "down"
            audit.record(session, f"Failed to run VM {vm.name}: {message}",
                         code=audit.VM_START_FAILED, severity=LogSeverity.ERROR, vm_id=vm.id,
                         job_id=ctx.job.id)


async def stop_vm(ctx: JobContext) -> dict[str, Any]:
    """Power off at once (libvirt destroy); a suspended VM just forgets its saved state."""
    vm_id = ctx.uuid_param("vm_id")
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, vm_id)
    if vm.host_id is not None:
        host = await _running_host(ctx, vm)
        async with ctx.step(f"Stopping VM {vm.name} on host {host.name}", host_id=host.id):
            try:
                report = await ctx.nodes.call(host, VmDestroy(vm_id=vm_id), VmStatusReport,
                                              key=ctx.key("destroy"))
            except NodeCommandFailed as exc:
                if exc.error.code is not ErrorCode.NO_SUCH_VM:
                    raise
                report = VmStatusReport(vm_id=vm_id, name=vm.name, state=VmState.GONE)
    else:
        report = VmStatusReport(vm_id=vm_id, name=vm.name, state=VmState.GONE)
        if vm.saved_state_path and vm.saved_state_host_id:
            async with ctx.transaction() as session:
                saved_on = await lookup.get(session, Host, vm.saved_state_host_id)
            async with ctx.step(f"Discarding the saved memory of VM {vm.name}",
                                host_id=saved_on.id):
                await _delete_volume(ctx, saved_on, vm.saved_state_path, key="discard-memory")
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, vm_id)
        _apply_report(vm, report)
        vm.desired_status, vm.stop_reason = "down", ctx.params.get("reason", "")
        vm.saved_state_path, vm.saved_state_host_id = None, None
        audit.record(session, f"VM {vm.name} powered off", code=audit.VM_STOPPED, vm_id=vm.id,
                     job_id=ctx.job.id, user_id=ctx.job.owner_id)
    return {}


async def shutdown_vm(ctx: JobContext) -> dict[str, Any]:
    """ACPI shutdown; the node destroys the VM if the guest has not stopped in time."""
    vm_id = ctx.uuid_param("vm_id")
    timeout = float(ctx.params.get("timeout_s", 120))
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, vm_id)
        if vm.status == VmStatus.UP.value:
            vm.status = VmStatus.POWERING_DOWN.value
    host = await _running_host(ctx, vm)
    async with ctx.step(f"Shutting down VM {vm.name} on host {host.name}", host_id=host.id):
        try:
            report = await ctx.nodes.call(
                host, VmShutdown(vm_id=vm_id, timeout_s=timeout), VmStatusReport,
                key=ctx.key("shutdown"), timeout_s=timeout + 30)
        except NodeCommandFailed as exc:
            if exc.error.code is not ErrorCode.NO_SUCH_VM:
                raise
            report = VmStatusReport(vm_id=vm_id, name=vm.name, state=VmState.GONE)
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, vm_id)
        _apply_report(vm, report)
        vm.desired_status, vm.stop_reason = "down", ctx.params.get("reason", "")
        audit.record(session, f"VM {vm.name} was shut down", code=audit.VM_SHUTDOWN,
                     vm_id=vm.id, job_id=ctx.job.id, user_id=ctx.job.owner_id)
    return {}


async def reboot_vm(ctx: JobContext) -> dict[str, Any]:
    vm_id = ctx.uuid_param("vm_id")
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, vm_id)
        vm.status = VmStatus.REBOOT_IN_PROGRESS.value
    host = await _running_host(ctx, vm)
    async with ctx.step(f"Rebooting VM {vm.name} on host {host.name}", host_id=host.id):
        report = await ctx.nodes.call(host, VmReboot(vm_id=vm_id), VmStatusReport,
                                      key=ctx.key("reboot"))
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, vm_id)
        _apply_report(vm, report)
        audit.record(session, f"VM {vm.name} was rebooted", code=audit.VM_REBOOT, vm_id=vm.id,
                     job_id=ctx.job.id, user_id=ctx.job.owner_id)
    return {}


async def suspend_vm(ctx: JobContext) -> dict[str, Any]:
    """oVirt's suspend: the VM's memory goes to the host's local storage and the VM stops."""
    vm_id = ctx.uuid_param("vm_id")
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, vm_id)
        host = await _running_host(ctx, vm)
        directory = await memory_image_dir(session, vm, host)
        vm.status = VmStatus.SAVING_STATE.value
    path = f"{directory}/saved/{vm_id}.memory"
    async with ctx.step(f"Saving the memory of VM {vm.name} on host {host.name}",
                        host_id=host.id):
        report = await ctx.nodes.call(host, VmSave(vm_id=vm_id, path=path), VmStatusReport,
                                      key=ctx.key("save"), timeout_s=600)
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, vm_id)
        vm.status = vm_status_of(report.state).value
        vm.host_id, vm.vnc_port, vm.desired_status = None, None, "suspended"
        vm.saved_state_path, vm.saved_state_host_id = path, host.id
        audit.record(session, f"VM {vm.name} was suspended to disk on host {host.name}",
                     code=audit.VM_SUSPENDED, vm_id=vm.id, host_id=host.id, job_id=ctx.job.id,
                     user_id=ctx.job.owner_id)
    return {"path": path}


async def _suspend_failed(ctx: JobContext, message: str) -> None:
    async with ctx.transaction() as session:
        vm = await session.get(Vm, ctx.uuid_param("vm_id"))
        if vm is not None and vm.status == VmStatus.SAVING_STATE.value:
            vm.status = VmStatus.UP.value  # the node answers otherwise; the monitor resyncs


async def remove_vm(ctx: JobContext) -> dict[str, Any]:
    """Delete the VM's disks (unless detach_only) on their storage, then the VM."""
    vm_id = ctx.uuid_param("vm_id")
    detach_only = bool(ctx.params.get("detach_only", False))
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, vm_id)
        disks = [(d, sd) for _a, d, sd in await vm_disks(session, vm_id)]
    if not detach_only:
        for disk, domain in disks:
            if domain.host_id is None:
                continue
            async with ctx.transaction() as session:
                host = await lookup.get(session, Host, domain.host_id)
            async with ctx.step(f"Removing disk {disk.name}", host_id=host.id):
                await _delete_volume(ctx, host, f"{domain.path.rstrip('/')}/{disk.image_path}",
                                     key=f"delete-{disk.id}")
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, vm_id)
        for disk, _domain in disks:
            found = await session.get(type(disk), disk.id)
            if found is not None and not detach_only:
                await session.delete(found)
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


async def set_ticket(ctx: JobContext) -> dict[str, Any]:
    """A one-time console password on the VM's host; the node's VNC port is recorded too."""
    vm_id = ctx.uuid_param("vm_id")
    password = str(ctx.params.get("password") or "")
    if not password:
        raise JobFailed("the ticket's password is gone (the job was already run); ask again")
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, vm_id)
    host = await _running_host(ctx, vm)
    async with ctx.step(f"Setting the console ticket of VM {vm.name} on host {host.name}",
                        host_id=host.id):
        ticket = await ctx.nodes.call(
            host, VmSetTicket(vm_id=vm_id, password=password,
                              expiry_s=int(ctx.params.get("expiry_s", 120))),
            VmTicket, key=ctx.key("ticket"))
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, vm_id)
        if vm.host_id == host.id and ticket.vnc_port > 0:
            vm.vnc_port = ticket.vnc_port
        await _forget_password(session, ctx.job.id)
    return {"vnc_port": ticket.vnc_port, "expires_at": ticket.expires_at}


async def _forget_password(session: AsyncSession, job_id: uuid.UUID) -> None:
    job = await session.get(Job, job_id)
    if job is not None and "password" in job.params:
        job.params = {k: v for k, v in job.params.items() if k != "password"}


async def _ticket_failed(ctx: JobContext, message: str) -> None:
    async with ctx.transaction() as session:
        await _forget_password(session, ctx.job.id)


FAILURE_HOOKS: dict[str, FailureHook] = {"vm.start": _start_failed, "vm.suspend": _suspend_failed,
                                         "vm.ticket": _ticket_failed}

HANDLERS: dict[str, Handler] = {
    "vm.start": start_vm,
    "vm.stop": stop_vm,
    "vm.shutdown": shutdown_vm,
    "vm.reboot": reboot_vm,
    "vm.suspend": suspend_vm,
    "vm.remove": remove_vm,
    "vm.ticket": set_ticket,
}
