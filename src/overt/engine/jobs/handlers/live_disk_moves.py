"""The live half of a disk move (oVirt's live storage migration): the disk of a running
VM goes to another NFS or iSCSI domain while the guest keeps running.

The engine makes the target volume empty (the disk's format and size) on the target
domain, then asks the VM's host to mirror the disk into it (a libvirt block copy),
follows the copy into the job's step until the mirror is ready, and asks the host to
pivot: QEMU writes the target from then on. `disk_moves.move_disk` then switches the
disk's row and removes the old volume, as an offline move does.

The node is the truth about where QEMU writes: every try, and the engine that takes the
job over after a crash, asks it first (a pivot done: switch; a mirror running: follow
it; none: start one). A try that fails before the pivot cancels the mirror (the VM stays
on its volume) and says so in the job's result, so the compensation knows whether the
target may go at once or only once the VM is down. A pivot asked but not confirmed, with
the VM gone since (no node can say which volume it last wrote), keeps both volumes and
marks the disk illegal for the administrator to judge.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Disk, Host, Job, StorageDomain, Vm
from overt.engine.jobs.context import JobContext
from overt.engine.jobs.errors import JobFailed, RetryLater
from overt.engine.jobs.handlers import leftovers
from overt.engine.jobs.handlers.snapshot_volumes import disk_format, volume_host
from overt.engine.jobs.handlers.storage_domains import export_of
from overt.engine.jobs.kinds import MoveDisk
from overt.engine.model.status import DiskStatus, HostStatus, LogSeverity, StorageType, VmStatus
from overt.engine.nodes import NodeCommandFailed
from overt.engine.queries import lookup
from overt.engine.queries.shared_storage import (
    extent_of,
    lun_of,
    release_reservations,
    split_volume_path,
)
from overt.engine.queries.vm_spec import disk_source
from overt.protocol import ErrorCode
from overt.protocol.commands import BlockCopyState, VmBlockCopy, VmBlockCopyStatus
from overt.protocol.storage import ExtentFormat, SharedVolumeCreate, SharedVolumeInfo
from overt.protocol.vm import DiskSource

log = logging.getLogger(__name__)
POLL_S = 1.0  # how often the mirror's progress is read
READY_TIMEOUT_S = 6 * 3600.0  # a mirror not in sync by then is cancelled
# In the job's result: the target volume was made; the mirror was cancelled (nothing
# writes the target); the pivot was asked (QEMU may write the target).
TARGET_MADE = "live_target_made"
STOPPED = "live_copy_stopped"
PIVOT_ASKED = "live_pivot_asked"
Action = Literal["start", "pivot", "abort"]


def _vm_gone(exc: Exception) -> bool:
    """The node says the VM runs no more (so no QEMU writes any volume of it)."""
    return isinstance(exc, NodeCommandFailed) and (
        exc.error.code is ErrorCode.NO_SUCH_VM or (exc.error.code is ErrorCode.INVALID_STATE
                                                   and "not running" in exc.error.message))


async def _note(ctx: JobContext, **facts: bool) -> None:
    async with ctx.transaction() as session:
        job = await lookup.get(session, Job, ctx.job.id, for_update=True)
        job.result = {**job.result, **facts}


async def _running_host(ctx: JobContext, spec: MoveDisk) -> tuple[Vm, Host]:
    assert spec.live_vm_id is not None
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, spec.live_vm_id)
        host = await session.get(Host, vm.host_id) if vm.host_id is not None else None
    if vm.status == VmStatus.DOWN or host is None:
        raise JobFailed(f"VM {vm.name} stopped while its disk was being moved live")
    if host.status != HostStatus.UP:
        raise RetryLater(f"host {host.name} of VM {vm.name} is {host.status}")
    return vm, host


async def mirror(ctx: JobContext, spec: MoveDisk, disk: Disk, source: StorageDomain,
                 target: StorageDomain) -> None:
    """Returns once the running VM's QEMU writes the target volume (pivoted)."""
    vm, host = await _running_host(ctx, spec)
    destination = disk_source(target, Disk(id=disk.id, image_path=spec.target_path),
                              ctx.services.secret_box())

    async def ask(action: Action) -> BlockCopyState:
        return await ctx.nodes.call(host, VmBlockCopy(
            vm_id=vm.id, disk_id=disk.id, destination=destination,
            format=disk_format(disk.format), action=action),
            BlockCopyState, key=ctx.key(f"live-move-{action}-{disk.id}-{ctx.job.attempts}"),
            timeout_s=600)

    state = await _state(ctx, host, vm, disk, destination)
    if state.on_destination:
        return  # pivoted by an earlier try (or before the engine died)
    await _note(ctx, **{PIVOT_ASKED: False})  # an earlier pivot, if asked, did not happen
    title = f"Copying disk {disk.name} of VM {vm.name} live to storage domain {target.name}"
    async with ctx.step(title, host_id=host.id) as step:
        try:
            if state.job == "none":
                await _make_target(ctx, spec, disk, target)
                await _note(ctx, **{STOPPED: False})  # a mirror may write the target again
                state = await ask("start")
            deadline = asyncio.get_running_loop().time() + READY_TIMEOUT_S
            while not state.on_destination and state.job != "ready":
                if state.job == "none":
                    raise RetryLater(f"the mirror of disk {disk.name} ended before it was "
                                     "in sync (QEMU gave the copy up)")
                if asyncio.get_running_loop().time() > deadline:
                    raise JobFailed(f"the mirror of disk {disk.name} was not in sync after "
                                    f"{READY_TIMEOUT_S:g} s")
                percent = 100 * state.copied // state.total if state.total else 0
                await ctx.update_step(step.id, description=f"{title}: {percent}%",
                                      progress=percent)
                await asyncio.sleep(POLL_S)
                state = await _state(ctx, host, vm, disk, destination)
        except Exception:
            await _cancel(ctx, ask, disk)
            raise
        if not state.on_destination:
            await ctx.update_step(step.id, description=f"{title}: in sync, switching",
                                  progress=100)
            await _note(ctx, **{PIVOT_ASKED: True})
            state = await ask("pivot")
        if not state.on_destination:
            raise RetryLater(f"VM {vm.name} does not write the new volume of disk {disk.name} "
                             "after the pivot")


async def _state(ctx: JobContext, host: Host, vm: Vm, disk: Disk, destination: DiskSource
                 ) -> BlockCopyState:
    try:
        return await ctx.nodes.call(host, VmBlockCopyStatus(
            vm_id=vm.id, disk_id=disk.id, destination=destination), BlockCopyState)
    except NodeCommandFailed as exc:
        if _vm_gone(exc):
            raise JobFailed(f"VM {vm.name} stopped while its disk {disk.name} was being "
                            f"moved live ({exc})") from None
        if not exc.transient:
            raise JobFailed(f"the live move of disk {disk.name} cannot go on: {exc}") from None
        raise


async def _cancel(ctx: JobContext, ask: Callable[[Action], Awaitable[BlockCopyState]],
                  disk: Disk) -> None:
    """Best effort: the mirror ends and the VM keeps its volume; recorded when certain."""
    try:
        state = await ask("abort")
    except Exception as exc:  # the node is unreachable, or the VM is gone
        log.warning("the mirror of disk %s was not cancelled: %s", disk.name, exc)
        if _vm_gone(exc):  # no QEMU writes the target any more
            await _note(ctx, **{STOPPED: True})
        return
    if not state.on_destination and state.job == "none":
        await _note(ctx, **{STOPPED: True})


async def _make_target(ctx: JobContext, spec: MoveDisk, disk: Disk,
                       target: StorageDomain) -> None:
    """The empty volume the mirror writes: the disk's format and size, on the target;
    recorded as in the making first, so a job failing for good removes it."""
    async with ctx.transaction() as session:
        if (await lookup.get(session, Job, ctx.job.id)).result.get(TARGET_MADE):
            return
    await leftovers.making(ctx, target, spec.target_path)
    host = await volume_host(ctx, target)
    key = ctx.key(f"live-move-target-{disk.id}")
    if target.storage_type == StorageType.ISCSI.value:
        extent = extent_of(spec.target_path)
        if extent is None:
            raise JobFailed(f"volume {spec.target_path} is not an extent of {target.name}")
        await ctx.nodes.call(host, ExtentFormat(
            lun=lun_of(target, ctx.services.secret_box()), offset=extent[0], size=extent[1],
            format=disk_format(disk.format), virtual_size=disk.provisioned_size),
            SharedVolumeInfo, key=key, timeout_s=600)
    else:
        image_id, volume_id = split_volume_path(spec.target_path)
        description = json.dumps({"DiskAlias": disk.name, "DiskDescription": disk.description})
        await ctx.nodes.call(host, SharedVolumeCreate(
            storage=export_of(target), domain_id=target.storage_uuid or target.id,
            image_id=image_id, volume_id=volume_id, format=disk_format(disk.format),
            size_bytes=disk.provisioned_size, sparse=disk.sparse,
            metadata={"DESCRIPTION": description, "CTIME": ctx.ctime()}),
            SharedVolumeInfo, key=key, timeout_s=600)
    await _note(ctx, **{TARGET_MADE: True})


async def live_move_failed(session: AsyncSession, ctx: JobContext, spec: MoveDisk,
                           disk: Disk, message: str) -> None:
    """Before the switch: the target goes at once if nothing mirrors into it any more,
    else once the VM is down; a pivot asked and never confirmed keeps both volumes."""
    if ctx.job.result.get(PIVOT_ASKED) and not ctx.job.result.get(STOPPED):
        disk.status = DiskStatus.ILLEGAL
        audit.record(session, f"Moving disk {disk.name} live failed after its VM was asked "
                     f"to switch to the new volume: {message}. Which volume holds its latest "
                     f"data is not known, so both are kept ({spec.source_path} on the source "
                     f"domain, {spec.target_path} on the target); the disk is illegal until "
                     "an administrator settles it.", code=audit.DISK_MOVE_FAILED,
                     severity=LogSeverity.ERROR, storage_domain_id=spec.source_domain_id,
                     job_id=ctx.job.id, user_id=ctx.job.owner_id)
        return
    stopped = bool(ctx.job.result.get(STOPPED))
    handed = await leftovers.hand_off(session, ctx, vm_id=None if stopped else spec.live_vm_id,
                                      live=not stopped, message=message)
    if spec.target_path not in handed:
        await release_reservations(session, [spec.target_path])
    audit.record(session, f"Moving disk {disk.name} live failed: {message}. The VM keeps "
                 "running on the disk's volume, which stays on its storage domain; the new "
                 "volume is removed" + ("." if stopped else " once the VM is down."),
                 code=audit.DISK_MOVE_FAILED, severity=LogSeverity.ERROR,
                 storage_domain_id=spec.source_domain_id, job_id=ctx.job.id,
                 user_id=ctx.job.owner_id)
