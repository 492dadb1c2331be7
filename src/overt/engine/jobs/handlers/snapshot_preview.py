"""Previewing a snapshot on a down VM, then committing or undoing the preview.

A preview changes no volume: each disk reads a new one over the snapshot's, and the
volumes it read until then stay on storage under the `preview` snapshot. Each disk's
change is recorded as soon as its node has acted; volumes are deleted only once nothing
in the database points at them.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Disk, Snapshot, SnapshotVolume, StorageDomain, Vm
from overt.engine.jobs.context import JobContext, Unit
from overt.engine.jobs.errors import JobFailed
from overt.engine.jobs.handlers import leftovers
from overt.engine.jobs.handlers.snapshot_memory import drop_memory_later
from overt.engine.jobs.handlers.snapshot_volumes import (
    chain_recorded,
    create_overlay,
    delete_volumes,
    volume_host,
)
from overt.engine.jobs.kinds import EndPreview, JobSpec, PreviewSnapshot
from overt.engine.model.status import LogSeverity, VmStatus
from overt.engine.queries import lookup
from overt.engine.queries.shared_storage import claim_extent, release_reservations
from overt.engine.queries.snapshot_chains import (
    IN_PREVIEW,
    PREVIEW,
    off_chain_volumes,
)


async def _down_vm(ctx: JobContext, vm_id: uuid.UUID) -> Vm:
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, vm_id)
    if vm.status != VmStatus.DOWN:
        raise JobFailed(f"VM {vm.name} is {vm.status}; shut it down first")
    return vm


async def _delete(ctx: JobContext, domain: StorageDomain, paths: list[str], key: str) -> None:
    host = await volume_host(ctx, domain)
    await delete_volumes(ctx, host, domain, paths, key)


async def preview_snapshot(ctx: JobContext, spec: PreviewSnapshot) -> dict[str, Any]:
    vm = await _down_vm(ctx, spec.vm_id)
    async with ctx.transaction() as session:
        volumes = list((await session.execute(select(SnapshotVolume).where(
            SnapshotVolume.snapshot_id == spec.snapshot_id))).scalars())
    for volume in volumes:
        async with ctx.transaction() as session:
            disk = await lookup.get(session, Disk, volume.disk_id)
            domain = await lookup.domain_of(session, disk)
        new_path = spec.overlays[str(disk.id)]
        if disk.image_path != new_path:  # else previewed by an earlier attempt
            await _preview_disk(ctx, spec, disk, domain, volume, new_path)
        await chain_recorded(ctx, domain, key=f"recorded-{disk.id}")
    async with ctx.transaction() as session:
        snapshot = await lookup.get(session, Snapshot, spec.snapshot_id)
        snapshot.status = IN_PREVIEW
        (await lookup.get(session, Snapshot, spec.preview_id)).status = "ok"
        row = await lookup.get(session, Vm, vm.id, for_update=True)
        row.resume_snapshot_id = snapshot.id if spec.restore_memory and \
            snapshot.memory_volume else None
        audit.record(session, f"VM {vm.name} is previewing Snapshot '{snapshot.description}'",
                     code=audit.SNAPSHOT_PREVIEWED, vm_id=vm.id, job_id=ctx.job.id,
                     user_id=ctx.job.owner_id)
    return {"disks": len(volumes)}


async def _preview_disk(ctx: JobContext, spec: PreviewSnapshot, disk: Disk,
                        domain: StorageDomain, volume: SnapshotVolume, new_path: str) -> None:
    """The disk reads a new volume over the snapshot's; its volume until now is kept."""
    host = await volume_host(ctx, domain)
    await leftovers.making(ctx, domain, new_path)
    async with ctx.step(f"Previewing a snapshot of disk {disk.name}", host_id=host.id):
        await create_overlay(ctx, host, domain, disk, new_path, volume.image_path,
                             volume.format, key=f"overlay-{disk.id}")
    async with ctx.transaction() as session:
        row = await lookup.get(session, Disk, disk.id, for_update=True)
        session.add(SnapshotVolume(snapshot_id=spec.preview_id, disk_id=row.id,
                                   image_path=row.image_path, format=row.format))
        row.image_path, row.format = new_path, "cow"
        await claim_extent(session, new_path)


async def preview_failed(session: AsyncSession, ctx: JobContext, spec: PreviewSnapshot,
                         message: str) -> None:
    """Disks already previewing stay so (recorded as each was made): the snapshot is in
    preview, to be committed or undone; with none, the preview is forgotten. A new volume
    not recorded goes to a removal job (`leftovers`)."""
    snapshot = await session.get(Snapshot, spec.snapshot_id)
    preview = await session.get(Snapshot, spec.preview_id)
    started = preview is not None and (await session.execute(select(SnapshotVolume.pk).where(
        SnapshotVolume.snapshot_id == preview.id))).first() is not None
    if preview is not None:
        if started:
            preview.status = "ok"
        else:
            await session.delete(preview)
    if snapshot is not None:
        snapshot.status = IN_PREVIEW if started else "ok"
        audit.record(session, f"Failed to preview snapshot '{snapshot.description}': {message}",
                     severity=LogSeverity.ERROR, vm_id=spec.vm_id, job_id=ctx.job.id)
    vm = await session.get(Vm, spec.vm_id)
    handed = await leftovers.hand_off(session, ctx, vm_id=vm.id if vm else None, live=False,
                                      message=message)
    await release_reservations(session, [p for p in spec.overlays.values() if p not in handed])


async def end_preview(ctx: JobContext, spec: EndPreview) -> dict[str, Any]:
    vm = await _down_vm(ctx, spec.vm_id)
    async with ctx.transaction() as session:
        snapshot = await lookup.get(session, Snapshot, spec.snapshot_id)
        preview = (await session.execute(select(Snapshot).where(
            Snapshot.vm_id == vm.id, Snapshot.kind == PREVIEW))).scalars().first()
        kept = [] if preview is None else list((await session.execute(select(
            SnapshotVolume).where(SnapshotVolume.snapshot_id == preview.id))).scalars())
    for volume in kept:
        if spec.commit:
            await _commit_disk(ctx, volume.disk_id)
        else:
            await _undo_disk(ctx, volume)
    async with ctx.transaction() as session:
        snapshot = await lookup.get(session, Snapshot, spec.snapshot_id)
        vm_row = await lookup.get(session, Vm, vm.id, for_update=True)
        if spec.commit:
            dropped_all = list((await session.execute(select(Snapshot).where(
                Snapshot.vm_id == vm.id, Snapshot.kind != PREVIEW,
                Snapshot.created_at > snapshot.created_at))).scalars())
            for dropped in dropped_all:
                await session.delete(dropped)
            await drop_memory_later(session, ctx, dropped_all)
        else:  # the VM is as before the preview: nothing to resume from
            vm_row.resume_snapshot_id = None
        if preview is not None and (row := await session.get(Snapshot, preview.id)):
            await session.delete(row)
        snapshot.status = "ok"
        done = "committed" if spec.commit else "undone"
        audit.record(session, f"The preview of Snapshot '{snapshot.description}' of VM "
                     f"{vm.name} was {done}", code=audit.SNAPSHOT_PREVIEW_ENDED, vm_id=vm.id,
                     job_id=ctx.job.id, user_id=ctx.job.owner_id)
    return {"disks": len(kept)}


async def _commit_disk(ctx: JobContext, disk_id: uuid.UUID) -> None:
    """The disk keeps the previewed chain: the volumes off it go."""
    async with ctx.transaction() as session:
        disk = await lookup.get(session, Disk, disk_id)
        domain = await lookup.domain_of(session, disk)
        dropped = await off_chain_volumes(session, disk_id)
        for volume in dropped:
            await session.delete(volume)
    await _delete(ctx, domain, [v.image_path for v in dropped], f"drop-{disk_id}")


async def _undo_disk(ctx: JobContext, kept: SnapshotVolume) -> None:
    """The disk reads its volumes from before the preview again; the preview's volume goes."""
    async with ctx.transaction() as session:
        row = await session.get(SnapshotVolume, kept.pk)
        if row is None:
            return  # undone by an earlier attempt
        disk = await lookup.get(session, Disk, kept.disk_id, for_update=True)
        domain = await lookup.domain_of(session, disk)
        previewed = disk.image_path
        disk.image_path, disk.format = row.image_path, row.format
        await session.delete(row)
    await _delete(ctx, domain, [previewed], f"undo-{disk.id}")


async def end_failed(session: AsyncSession, ctx: JobContext, spec: EndPreview,
                     message: str) -> None:
    """The preview stays (what was done is recorded per disk) for another try."""
    audit.record(session, f"Failed to end the preview of a snapshot of VM {spec.vm_id}: "
                 f"{message}", severity=LogSeverity.ERROR, vm_id=spec.vm_id, job_id=ctx.job.id)


UNITS: dict[type[JobSpec], Unit[Any]] = {
    PreviewSnapshot: Unit(preview_snapshot, compensate=preview_failed),
    EndPreview: Unit(end_preview, compensate=end_failed),
}
