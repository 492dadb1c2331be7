"""Restoring a down VM to a snapshot: each disk is given a new volume over the snapshot's,
recorded at once; only then are the volumes the VM no longer reads deleted, so a crash
leaves at worst a volume to delete again, never a chain that points at nothing."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Disk, Snapshot, SnapshotVolume, Vm
from overt.engine.jobs.context import JobContext, Unit
from overt.engine.jobs.errors import JobFailed
from overt.engine.jobs.handlers import leftovers
from overt.engine.jobs.handlers.snapshot_memory import drop_memory_later
from overt.engine.jobs.handlers.snapshot_volumes import (
    create_overlay,
    delete_volumes,
    volume_host,
)
from overt.engine.jobs.kinds import JobSpec, RestoreSnapshot
from overt.engine.model.status import LogSeverity, VmStatus
from overt.engine.queries import lookup
from overt.engine.queries.shared_storage import claim_extent, release_reservations
from overt.engine.queries.snapshot_chains import snapshot_volumes


async def restore_snapshot(ctx: JobContext, spec: RestoreSnapshot) -> dict[str, Any]:
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, spec.vm_id)
        snapshot = await lookup.get(session, Snapshot, spec.snapshot_id)
        disk_ids = list((await session.execute(select(SnapshotVolume.disk_id).where(
            SnapshotVolume.snapshot_id == snapshot.id))).scalars())
    if vm.status != VmStatus.DOWN:
        raise JobFailed(f"VM {vm.name} is {vm.status}; a snapshot is restored on a down VM")
    for disk_id in disk_ids:
        await _restore_disk(ctx, snapshot, disk_id, spec.overlays[str(disk_id)])
    async with ctx.transaction() as session:
        snapshot = await lookup.get(session, Snapshot, spec.snapshot_id)
        newer = list((await session.execute(select(Snapshot).where(
            Snapshot.vm_id == vm.id, Snapshot.created_at > snapshot.created_at))).scalars())
        for dropped in newer:
            await session.delete(dropped)
        await drop_memory_later(session, ctx, newer)
        row = await lookup.get(session, Vm, vm.id, for_update=True)
        # oVirt's restore_memory: the next start resumes the guest saved with the snapshot.
        row.resume_snapshot_id = snapshot.id if spec.restore_memory and \
            snapshot.memory_volume else None
        snapshot.status = "ok"
        audit.record(session, f"VM {vm.name} restored from Snapshot '{snapshot.description}'",
                     code=audit.SNAPSHOT_RESTORED, vm_id=vm.id, job_id=ctx.job.id,
                     user_id=ctx.job.owner_id)
    return {"disks": len(disk_ids)}


async def _restore_disk(ctx: JobContext, snapshot: Snapshot, disk_id: uuid.UUID,
                        new_path: str) -> None:
    async with ctx.transaction() as session:
        disk = await lookup.get(session, Disk, disk_id)
        domain = await lookup.domain_of(session, disk)
        volumes = await snapshot_volumes(session, disk.id)
    at = next((i for i, v in enumerate(volumes) if v.snapshot_id == snapshot.id), None)
    if at is None or (disk.image_path == new_path and len(volumes) == at + 1):
        return  # restored by an earlier attempt
    base = volumes[at]
    dropped = [v.image_path for v in volumes[at + 1:]] + [disk.image_path]
    host = await volume_host(ctx, domain)
    await leftovers.making(ctx, domain, new_path)
    async with ctx.step(f"Restoring disk {disk.name} to snapshot '{snapshot.description}'",
                        host_id=host.id):
        await create_overlay(ctx, host, domain, disk, new_path, base.image_path, base.format,
                             key=f"overlay-{disk.id}")
        async with ctx.transaction() as session:
            row = await lookup.get(session, Disk, disk.id, for_update=True)
            row.image_path, row.format = new_path, "cow"
            await claim_extent(session, new_path)
            await session.execute(delete(SnapshotVolume).where(
                SnapshotVolume.disk_id == disk.id, SnapshotVolume.pk > base.pk))
        await delete_volumes(ctx, host, domain, dropped, key=f"drop-{disk.id}")


async def restore_failed(session: AsyncSession, ctx: JobContext, spec: RestoreSnapshot,
                         message: str) -> None:
    """Disks restored already keep their new volume (recorded as each was made); a new
    volume not recorded goes to a removal job (`leftovers`), which frees its extent."""
    snapshot = await session.get(Snapshot, spec.snapshot_id)
    if snapshot is not None:
        snapshot.status = "ok"
        audit.record(session, f"Failed to restore snapshot '{snapshot.description}': {message}",
                     severity=LogSeverity.ERROR, vm_id=spec.vm_id, job_id=ctx.job.id)
    vm = await session.get(Vm, spec.vm_id)
    handed = await leftovers.hand_off(session, ctx, vm_id=vm.id if vm else None, live=False,
                                      message=message)
    await release_reservations(session, [p for p in spec.overlays.values() if p not in handed])


UNITS: dict[type[JobSpec], Unit[Any]] = {
    RestoreSnapshot: Unit(restore_snapshot, compensate=restore_failed),
}
