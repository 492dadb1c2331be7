"""oVirt's disk `copy` and `move` (the checks are the service's: `services.disk_moves`).

A copy makes the new disk the service recorded (`disk_copies.copy_image`) from a disk no
running VM uses; failing for good, the new disk goes and what reached storage is removed
(`leftovers`), the source is `ok` again. A move copies the volume to the path chosen at
submission (offline: `qemu-img convert` through a host; a running VM's disk: its QEMU
mirrors it and pivots, `live_disk_moves`; a disk with snapshots: its chain layer by
layer, each volume over the one copied before it), switches the disk's row (and its
snapshot volumes' rows, in the same commit) to it (same id, same attachments: the VM
runs from the new domain), then removes the old volumes. Every step
is safe to repeat: an engine that dies anywhere leaves the job to a successor, which
finds the switch made or not (live: it asks the VM's host where QEMU writes). Failing
for good before the switch, the disk stays where it was and the half-made target is
removed; after it, the disk is on the target and the old volume goes to a removal job.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Disk, ExtentReservation, Job, SnapshotVolume, StorageDomain
from overt.engine.jobs.context import JobContext, Unit
from overt.engine.jobs.errors import JobFailed
from overt.engine.jobs.handlers import leftovers, live_disk_moves
from overt.engine.jobs.handlers import storage_domains as shared
from overt.engine.jobs.handlers.disk_copies import (
    copy_host,
    copy_image,
    copy_source,
    copy_target,
)
from overt.engine.jobs.handlers.snapshot_volumes import delete_volumes, disk_format, volume_host
from overt.engine.jobs.kinds import CopyDisk, JobSpec, LeftVolume, MoveDisk, MovedLayer
from overt.engine.model.status import DiskStatus, LogSeverity, StorageType
from overt.engine.queries import lookup
from overt.engine.queries.shared_storage import (
    claim_extent,
    extent_of,
    release_reservations,
    split_volume_path,
)
from overt.engine.queries.snapshot_chains import volume_location
from overt.protocol.storage import (
    CopyBacking,
    ExtentRef,
    NfsVolumeTarget,
    SharedVolumeInfo,
    VolumeCopy,
)
from overt.protocol.vm import DiskFormat


async def copy_disk(ctx: JobContext, spec: CopyDisk) -> dict[str, Any]:
    await copy_image(ctx, spec.disk_copy, for_template=False)
    async with ctx.transaction() as session:
        source = await lookup.get(session, Disk, spec.disk_copy.source)
        made = await lookup.get(session, Disk, spec.disk_copy.target)
        domain = await lookup.domain_of(session, made)
        source.status = DiskStatus.OK
        audit.record(session, f"Disk {source.name} was copied to storage domain "
                     f"{domain.name} as disk {made.name}", code=audit.DISK_COPIED,
                     storage_domain_id=domain.id, job_id=ctx.job.id, user_id=ctx.job.owner_id)
    return {"disk": str(spec.disk_copy.target)}


async def copy_failed(session: AsyncSession, ctx: JobContext, spec: CopyDisk,
                      message: str) -> None:
    """The new disk goes (what reached storage with it, by a removal job); the source is
    as it was."""
    source = await session.get(Disk, spec.disk_copy.source)
    made = await session.get(Disk, spec.disk_copy.target)
    if made is not None:
        left = await leftovers.forget_disk(session, made)
        await leftovers.remove_later(session, ctx, [left], message=message)
    if source is None:
        return
    if source.status == DiskStatus.LOCKED:
        source.status = DiskStatus.OK
    audit.record(session, f"Copying disk {source.name} failed: {message}. The copy was "
                 "removed; the disk is unchanged.", code=audit.DISK_COPY_FAILED,
                 severity=LogSeverity.ERROR, storage_domain_id=source.storage_domain_id,
                 job_id=ctx.job.id, user_id=ctx.job.owner_id)


async def move_disk(ctx: JobContext, spec: MoveDisk) -> dict[str, Any]:
    async with ctx.transaction() as session:
        disk = await lookup.get(session, Disk, spec.disk_id)
        source = await lookup.get(session, StorageDomain, spec.source_domain_id)
        target = await lookup.get(session, StorageDomain, spec.target_domain_id)
    if disk.image_path != spec.target_path:  # not switched yet (by an earlier try)
        if spec.live_vm_id is not None:
            await live_disk_moves.mirror(ctx, spec, disk, source, target)
        elif spec.chain:
            await _copy_chain(ctx, spec, disk, source, target)
        else:
            await _copy_volume(ctx, spec, disk, source, target)
        await _switch(ctx, spec)
    host = await volume_host(ctx, target)
    if target.storage_type == StorageType.ISCSI.value:
        await shared.write_lun_metadata(ctx, target, host, key=f"move-md-{disk.id}")
    old_host = await volume_host(ctx, source)
    async with ctx.step(f"Removing the volume of disk {disk.name} from storage domain "
                        f"{source.name}", host_id=old_host.id):
        await delete_volumes(ctx, old_host, source, _old_paths(spec),
                             key=f"move-old-{disk.id}")
    async with ctx.transaction() as session:
        await release_reservations(session, _old_paths(spec))
        disk = await lookup.get(session, Disk, spec.disk_id)
        disk.status = DiskStatus.OK
        live = " while its VM kept running" if spec.live_vm_id is not None else ""
        audit.record(session, f"Disk {disk.name} was moved from storage domain {source.name} "
                     f"to {target.name}{live}", code=audit.DISK_MOVED, storage_domain_id=target.id,
                     job_id=ctx.job.id, user_id=ctx.job.owner_id)
    return {"storage_domain": str(target.id)}


async def _copy_volume(ctx: JobContext, spec: MoveDisk, disk: Disk, source: StorageDomain,
                       target: StorageDomain) -> None:
    """The disk's volume, flattened, at `spec.target_path` on the target domain: recorded
    as in the making first, so a job failing for good removes what was made of it."""
    host = await copy_host(ctx, source, target)
    await leftovers.making(ctx, target, spec.target_path)
    moved = Disk(id=disk.id, name=disk.name, description=disk.description,
                 image_path=spec.target_path, format=disk.format)
    async with ctx.step(f"Copying disk {disk.name} to storage domain {target.name}",
                        host_id=host.id):
        made = await ctx.nodes.call(host, VolumeCopy(
            source=copy_source(ctx, source, disk),
            target=copy_target(ctx, target, moved, shared_by_vms=False),
            format=DiskFormat.QCOW2 if disk.format == "cow" else DiskFormat.RAW,
            size_bytes=disk.provisioned_size, sparse=disk.sparse),
            SharedVolumeInfo, key=ctx.key(f"move-{disk.id}"), timeout_s=3600)
    async with ctx.transaction() as session:
        row = await lookup.get(session, Disk, spec.disk_id)
        row.actual_size = made.actual_size


def _old_paths(spec: MoveDisk) -> list[str]:
    """The volumes the disk leaves behind: its chain's, base first, then its own."""
    return [*(layer.source_path for layer in spec.chain), spec.source_path]


def _new_paths(spec: MoveDisk) -> list[str]:
    return [*(layer.target_path for layer in spec.chain), spec.target_path]


async def _copy_chain(ctx: JobContext, spec: MoveDisk, disk: Disk, source: StorageDomain,
                      target: StorageDomain) -> None:
    """The disk's chain on the target, layer by layer, base first: each volume holds what
    its source volume holds (`qemu-img convert -B`) over the one copied before it, so the
    snapshots stay snapshots. A layer copied by an earlier try is not copied again."""
    host = await copy_host(ctx, source, target)
    layers = [*spec.chain, MovedLayer(pk=0, source_path=spec.source_path,
                                      target_path=spec.target_path, format=disk.format)]
    under: MovedLayer | None = None
    total = 0
    for number, layer in enumerate(layers):
        top = number == len(layers) - 1
        async with ctx.transaction() as session:
            copied = (await lookup.get(session, Job, ctx.job.id)).result.get(_COPIED, {})
        if layer.target_path in copied:
            total += copied[layer.target_path]
            under = layer
            continue
        await leftovers.making(ctx, target, layer.target_path)
        moved = Disk(id=disk.id, name=disk.name, description=disk.description,
                     image_path=layer.target_path, format=layer.format)
        volume_target = copy_target(ctx, target, moved, shared_by_vms=False)
        if isinstance(volume_target, NfsVolumeTarget) and not top:
            volume_target = volume_target.model_copy(update={"metadata": {
                **volume_target.metadata, "VOLTYPE": "INTERNAL"}})
        what = "its volume" if top else f"snapshot volume {number + 1} of {len(layers) - 1}"
        async with ctx.step(f"Copying {what} of disk {disk.name} to storage domain "
                            f"{target.name}", host_id=host.id):
            made = await ctx.nodes.call(host, VolumeCopy(
                source=copy_source(ctx, source, Disk(id=disk.id, name=disk.name,
                                                     image_path=layer.source_path)),
                target=volume_target, format=disk_format(layer.format),
                size_bytes=disk.provisioned_size, sparse=disk.sparse or under is not None,
                backing=_backing(target, under)),
                SharedVolumeInfo, key=ctx.key(f"move-layer-{number}-{disk.id}"),
                timeout_s=3600)
        async with ctx.transaction() as session:
            job = await lookup.get(session, Job, ctx.job.id, for_update=True)
            job.result = {**job.result, _COPIED: {**job.result.get(_COPIED, {}),
                                                 layer.target_path: made.actual_size}}
        total += made.actual_size
        under = layer
    async with ctx.transaction() as session:
        row = await lookup.get(session, Disk, spec.disk_id)
        row.actual_size = total


def _backing(domain: StorageDomain, under: MovedLayer | None) -> CopyBacking | None:
    """The volume copied before, as the next layer's copy names its backing."""
    if under is None:
        return None
    fmt = disk_format(under.format)
    if domain.storage_type == StorageType.NFS.value:
        return CopyBacking(format=fmt, volume_id=split_volume_path(under.target_path)[1])
    if domain.storage_type == StorageType.ISCSI.value:
        extent = extent_of(under.target_path)
        if extent is None:
            raise JobFailed(f"volume {under.target_path} is not an extent of {domain.name}")
        return CopyBacking(format=fmt, extent=ExtentRef(offset=extent[0], size=extent[1],
                                                        format=fmt))
    return CopyBacking(format=fmt, path=volume_location(domain, under.target_path))


async def _switch(ctx: JobContext, spec: MoveDisk) -> None:
    """The disk (and its chain) is on the target from this commit on; the old volumes'
    extents stay reserved until the volumes are removed."""
    async with ctx.transaction() as session:
        disk = await lookup.get(session, Disk, spec.disk_id, for_update=True)
        disk.storage_domain_id, disk.image_path = spec.target_domain_id, spec.target_path
        for layer in spec.chain:
            volume = await session.get(SnapshotVolume, layer.pk)
            if volume is None:
                raise JobFailed(f"a snapshot volume of disk {disk.name} went during the move")
            volume.image_path = layer.target_path
        for path in _new_paths(spec):
            await claim_extent(session, path)
        for path in _old_paths(spec):
            if extent_of(path) is not None:
                session.add(ExtentReservation(image_path=path,
                                              storage_domain_id=spec.source_domain_id))


async def move_failed(session: AsyncSession, ctx: JobContext, spec: MoveDisk,
                      message: str) -> None:
    """Before the switch: the disk is `ok` where it was, the half-made target removed.
    After it: the disk is `ok` on the target, and its old volume goes to a removal job."""
    disk = await session.get(Disk, spec.disk_id)
    if disk is None:
        return
    disk.status = DiskStatus.OK
    if disk.image_path == spec.target_path:
        await leftovers.remove_later(session, ctx, [LeftVolume(
            storage_domain_id=spec.source_domain_id, path=path) for path in _old_paths(spec)],
            message=message)
        audit.record(session, f"Disk {disk.name} was moved, but removing its old volume "
                     f"failed: {message}. A job removes it.", code=audit.DISK_MOVED,
                     severity=LogSeverity.WARNING, storage_domain_id=spec.target_domain_id,
                     job_id=ctx.job.id, user_id=ctx.job.owner_id)
        return
    if spec.live_vm_id is not None:
        await live_disk_moves.live_move_failed(session, ctx, spec, disk, message)
        return
    handed = await leftovers.hand_off(session, ctx, vm_id=None, live=False, message=message)
    await release_reservations(session, [p for p in _new_paths(spec) if p not in handed])
    audit.record(session, f"Moving disk {disk.name} failed: {message}. The disk stays on "
                 "its storage domain, unchanged.", code=audit.DISK_MOVE_FAILED,
                 severity=LogSeverity.ERROR, storage_domain_id=spec.source_domain_id,
                 job_id=ctx.job.id, user_id=ctx.job.owner_id)


_COPIED = "chain_copied"  # in a chain move's result: target path -> its actual size

UNITS: dict[type[JobSpec], Unit[Any]] = {
    CopyDisk: Unit(copy_disk, compensate=copy_failed),
    MoveDisk: Unit(move_disk, compensate=move_failed),
}
