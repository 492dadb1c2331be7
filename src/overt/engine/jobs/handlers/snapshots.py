"""Snapshot jobs: freezing a VM's disks under new volumes, and merging them away.

The engine decides every volume and records each disk's chain once its node has acted:
the chain in the database is the chain on storage. A running VM's volumes are changed by
its own host's QEMU (an external disk-only snapshot, a block commit; on NFS and iSCSI
over volumes the engine made: NFS volumes whose `.meta` it keeps right after a merge,
extents of a LUN whose metadata area it rewrites); a down VM's by the host of each
disk's storage domain (qemu-img).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import (
    Disk,
    Host,
    Job,
    Snapshot,
    SnapshotVolume,
    StorageDomain,
    Vm,
)
from overt.engine.jobs.context import JobContext, Unit
from overt.engine.jobs.errors import RetryLater
from overt.engine.jobs.handlers import leftovers
from overt.engine.jobs.handlers.snapshot_memory import (
    delete_memory,
    forget_memory,
    memory_target,
    record_memory,
)
from overt.engine.jobs.handlers.snapshot_volumes import (
    chain_recorded,
    commit_volume,
    create_overlay,
    delete_volumes,
    volume_host,
    volumes_of,
)
from overt.engine.jobs.kinds import CreateSnapshot, JobSpec, MemoryVolumes, RemoveSnapshot
from overt.engine.model.status import HostStatus, LogSeverity, StorageType, VmStatus
from overt.engine.model.volume_labels import (
    METADATA_BYTES,
    memory_disk_names,
    nfs_description,
)
from overt.engine.nodes import NodeCommandFailed
from overt.engine.queries import lookup
from overt.engine.queries.shared_storage import claim_extent, release_reservations
from overt.engine.queries.snapshot_chains import Merge, live_location, merge_of
from overt.engine.queries.vm_spec import vm_disks
from overt.protocol.commands import (
    DiskOverlay,
    Empty,
    MemorySaved,
    VmBlockCommit,
    VmDiskSnapshot,
    VmMemorySnapshot,
)

# A VM in these statuses has QEMU writing its disks: only its host may change them.
LIVE = frozenset({VmStatus.UP, VmStatus.PAUSED, VmStatus.POWERING_UP})


_MERGED = "merged_volumes"  # in the job's result: disk id -> its merged volume to delete
_MADE = "made_volumes"  # in the job's result: the new volumes made on storage so far

async def _live_host(ctx: JobContext, vm: Vm) -> Host | None:
    """The host whose QEMU runs the VM, or None when the VM is down."""
    if vm.status == VmStatus.DOWN:
        return None
    if vm.status not in LIVE or vm.host_id is None:
        raise RetryLater(f"VM {vm.name} is {vm.status}")
    async with ctx.transaction() as session:
        host = await lookup.get(session, Host, vm.host_id)
    if host.status != HostStatus.UP:
        raise RetryLater(f"host {host.name} of VM {vm.name} is {host.status}")
    return host


async def create_snapshot(ctx: JobContext, spec: CreateSnapshot) -> dict[str, Any]:
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, spec.vm_id)
        snapshot = await session.get(Snapshot, spec.snapshot_id)
        attached = [(d, sd) for _a, d, sd in await vm_disks(session, vm.id)
                    if str(d.id) in spec.overlays]
        # A retry after a disk's chain was recorded has nothing left to make for it.
        disks = [(d, sd) for d, sd in attached if d.image_path != spec.overlays[str(d.id)]]
    if snapshot is None or snapshot.status == "ok":
        return {"disks": 0}
    host = await _live_host(ctx, vm)
    saved: MemorySaved | None = None
    if host is not None:
        saved = await _snapshot_live(ctx, vm, host, disks, spec)
    else:
        await _make_overlays(ctx, disks, spec)
    if spec.memory is not None and saved is not None and not saved.stored:
        # The disks were switched: the snapshot stands, without the memory its node could
        # not store; the half-written memory volumes go.
        await _drop_memory(ctx, spec.memory)
    async with ctx.transaction() as session:
        snapshot = await lookup.get(session, Snapshot, spec.snapshot_id)
        if spec.memory is not None and saved is not None and saved.stored:
            record_memory(snapshot, spec.memory)
            for path in (spec.memory.volume, spec.memory.metadata_volume):
                await claim_extent(session, path)
        elif spec.memory is not None:  # the VM went down before the job (disk-only, as
            # oVirt), or its state could not be stored
            await release_reservations(session, [spec.memory.volume,
                                                 spec.memory.metadata_volume])
            if saved is not None:
                audit.record(session, f"Snapshot '{snapshot.description}' of VM {vm.name} "
                             f"was taken without its memory: {saved.problem}. Its disks are "
                             "in the snapshot; take another with memory to save it.",
                             code=audit.SNAPSHOT_MEMORY_NOT_SAVED,
                             severity=LogSeverity.WARNING, vm_id=vm.id, job_id=ctx.job.id,
                             user_id=ctx.job.owner_id)
        for disk, _domain in disks:
            row = await lookup.get(session, Disk, disk.id, for_update=True)
            session.add(SnapshotVolume(snapshot_id=snapshot.id, disk_id=row.id,
                                       image_path=row.image_path, format=row.format))
            row.image_path, row.format = spec.overlays[str(row.id)], "cow"
            await claim_extent(session, row.image_path)
    # Storage describes the new chains (an iSCSI domain's metadata area) before the
    # snapshot is `ok`: a retry after the chains were recorded does this again.
    for domain in {sd.id: sd for _d, sd in attached}.values():
        await chain_recorded(ctx, domain, key=f"recorded-{domain.id}")
    async with ctx.transaction() as session:
        snapshot = await lookup.get(session, Snapshot, spec.snapshot_id)
        snapshot.status = "ok"
        audit.record(session, f"Snapshot '{snapshot.description}' creation for VM {vm.name} "
                     "has been completed.", code=audit.SNAPSHOT_CREATED, vm_id=vm.id,
                     job_id=ctx.job.id, user_id=ctx.job.owner_id)
    if saved is not None and saved.pause_ms is not None:
        return {"disks": len(disks), "memory_bytes": saved.memory_bytes,
                "pause_ms": saved.pause_ms, "memory_ms": saved.total_ms}
    return {"disks": len(disks)}


async def _snapshot_live(ctx: JobContext, vm: Vm, host: Host,
                         disks: list[tuple[Disk, StorageDomain]], spec: CreateSnapshot
                         ) -> MemorySaved | None:
    """QEMU switches every disk to its new volume at once. On NFS and iSCSI the engine
    makes the volumes first (an NFS volume with its `.meta`, an extent with its qcow2
    header; QEMU only opens them), and takes them back if the node refuses: the disks
    keep writing their volumes, which are leaves again."""
    reuse = any(volumes_of(domain).engine_made for _disk, domain in disks)
    if reuse:
        await _make_overlays(ctx, disks, spec)
    overlays = tuple(DiskOverlay(active=live_location(sd, d.image_path),
                                 overlay=live_location(sd, spec.overlays[str(d.id)]),
                                 reuse=reuse) for d, sd in disks)
    try:
        if spec.memory is not None:
            return await _snapshot_with_memory(ctx, vm, host, overlays, spec.memory,
                                               spec.snapshot_id)
        async with ctx.step(f"Taking a snapshot of the disks of VM {vm.name}", host_id=host.id):
            await ctx.nodes.call(host, VmDiskSnapshot(vm_id=vm.id, disks=overlays), Empty,
                                 key=ctx.key("snapshot"), timeout_s=120)
    except NodeCommandFailed as exc:
        if reuse and not exc.transient:  # a transient failure is retried, not undone
            await _drop_overlays(ctx, disks, spec)
            if spec.memory is not None:
                await _drop_memory(ctx, spec.memory)
        raise
    return None


async def _drop_memory(ctx: JobContext, memory: MemoryVolumes) -> None:
    """The memory volumes (never written, or half) are removed now, the snapshot refused
    before it was taken or its state not stored; no QEMU holds them."""
    async with ctx.transaction() as session:
        domain = await lookup.get(session, StorageDomain, memory.storage_domain_id)
    host = await volume_host(ctx, domain)
    paths = [memory.volume, memory.metadata_volume]
    async with ctx.step("Removing the unused memory volumes", host_id=host.id):
        await delete_volumes(ctx, host, domain, paths, key="unused-memory")
    await leftovers.dropped(ctx, paths)


async def _snapshot_with_memory(ctx: JobContext, vm: Vm, host: Host,
                                overlays: tuple[DiskOverlay, ...], memory: MemoryVolumes,
                                snapshot_id: uuid.UUID) -> MemorySaved:
    """The disks and the guest's state in one node command; the memory volumes are
    recorded as being made first (a job that fails for good hands them to removal). The
    step shows how long the guest was paused."""
    async with ctx.transaction() as session:
        domain = await lookup.get(session, StorageDomain, memory.storage_domain_id)
        snapshot = await lookup.get(session, Snapshot, snapshot_id)
    for path in (memory.volume, memory.metadata_volume):
        await leftovers.making(ctx, domain, path)
    box = ctx.services.secret_box()
    # On NFS the `.meta` names each volume as the API shows its disk, at the size shown
    # (an iSCSI domain's metadata area does so from the engine's records).
    labels = {kind: nfs_description(*memory_disk_names(vm.name, vm.id, snapshot.description,
                                                       kind)) for kind in ("MEMD", "MEMM")}
    title = f"Taking a snapshot of the disks and memory of VM {vm.name}"
    async with ctx.step(title, host_id=host.id) as step:
        saved = await ctx.nodes.call(host, VmMemorySnapshot(
            vm_id=vm.id, disks=overlays,
            memory=memory_target(domain, memory.volume, box, labels["MEMD"], "MEMD",
                                 memory.size_bytes),
            metadata=memory_target(domain, memory.metadata_volume, box, labels["MEMM"],
                                   "MEMM", METADATA_BYTES)),
            MemorySaved, key=ctx.key("snapshot-memory"), timeout_s=1800)
        if saved.pause_ms is not None:
            await ctx.update_step(step.id, description=(
                f"{title}: guest paused {_pause_text(saved.pause_ms)}, "
                f"{saved.memory_bytes / (1 << 20):.0f} MiB of state saved in "
                f"{(saved.total_ms or 0) / 1000:.1f} s"))
    return saved


def _pause_text(pause_ms: float) -> str:
    """The guest's measured pause; the node reads the guest's state every 2 ms, so a
    pause it never saw was shorter than that."""
    return f"{pause_ms:.0f} ms" if pause_ms > 0 else "under 2 ms"


async def _make_overlays(ctx: JobContext, disks: list[tuple[Disk, StorageDomain]],
                         spec: CreateSnapshot) -> None:
    """Every disk's new volume, or none: when one cannot be made, those made already are
    removed (an NFS volume's `.meta` made the active one INTERNAL; it is a leaf again)."""
    try:
        for disk, domain in disks:
            await _create_overlay(ctx, disk, domain, spec.overlays[str(disk.id)])
    except NodeCommandFailed as exc:
        if not exc.transient:  # a transient failure is retried, not undone
            await _drop_overlays(ctx, disks, spec)
        raise


async def _drop_overlays(ctx: JobContext, disks: list[tuple[Disk, StorageDomain]],
                         spec: CreateSnapshot) -> None:
    for disk, domain in disks:
        host = await volume_host(ctx, domain)
        async with ctx.step(f"Removing the unused new volume of disk {disk.name}",
                            host_id=host.id):
            await delete_volumes(ctx, host, domain, [spec.overlays[str(disk.id)]],
                                 key=f"unused-{disk.id}")
            await volumes_of(domain).leaf_again(ctx, host, domain, disk.image_path,
                                                key=f"leaf-again-{disk.id}")
    await leftovers.dropped(ctx, [spec.overlays[str(disk.id)] for disk, _sd in disks])


async def _create_overlay(ctx: JobContext, disk: Disk, domain: StorageDomain,
                          new_path: str) -> None:
    """Make the disk's new volume once: after that a running VM's QEMU may be writing it
    (an iSCSI extent formatted again, by a retry on another host, would lose that)."""
    async with ctx.transaction() as session:
        job = await lookup.get(session, Job, ctx.job.id)
        if new_path in job.result.get(_MADE, []):
            return
    host = await volume_host(ctx, domain)
    await leftovers.making(ctx, domain, new_path, leaf=disk.image_path)
    async with ctx.step(f"Creating a volume of disk {disk.name}", host_id=host.id):
        await create_overlay(ctx, host, domain, disk, new_path, disk.image_path, disk.format,
                             key=f"overlay-{disk.id}")
    async with ctx.transaction() as session:
        job = await lookup.get(session, Job, ctx.job.id, for_update=True)
        job.result = {**job.result, _MADE: [*job.result.get(_MADE, []), new_path]}


async def create_failed(session: AsyncSession, ctx: JobContext, spec: CreateSnapshot,
                        message: str) -> None:
    """The disks keep their chains (they change only once the node has acted): the
    snapshot that was not taken is forgotten, and the new volumes the job may have made
    go to a removal job (`leftovers`), which frees their extents. A snapshot whose chains
    were recorded (only storage's description of them failed) is kept: its volumes are
    in use."""
    snapshot = await session.get(Snapshot, spec.snapshot_id)
    vm = await session.get(Vm, spec.vm_id)
    taken = snapshot is not None and (await session.execute(select(SnapshotVolume.pk).where(
        SnapshotVolume.snapshot_id == snapshot.id))).first() is not None
    if snapshot is not None:
        audit.record(session, f"Failed to create snapshot '{snapshot.description}' of VM "
                     f"{vm.name if vm else spec.vm_id}: {message}",
                     code=audit.SNAPSHOT_CREATE_FAILED, severity=LogSeverity.ERROR,
                     vm_id=spec.vm_id if vm else None, job_id=ctx.job.id)
        if taken:
            snapshot.status = "ok"
        else:
            await session.delete(snapshot)
    live = vm is not None and vm.status != VmStatus.DOWN
    # A memory snapshot given up: its host may keep the state it staged for a retry of
    # the copy; the removal job has it deleted there.
    memory = (spec.memory.volume, spec.memory.metadata_volume) if spec.memory else ()
    staged_on = vm.host_id if memory and vm is not None and not taken else None
    handed = await leftovers.hand_off(session, ctx, vm_id=vm.id if vm else None, live=live,
                                      message=message, staged_on=staged_on,
                                      staged_memory=memory)
    made = [*spec.overlays.values(), *memory]
    await release_reservations(session, [p for p in made if p not in handed])


async def remove_snapshot(ctx: JobContext, spec: RemoveSnapshot) -> dict[str, Any]:
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, spec.vm_id)
        found = await session.get(Snapshot, spec.snapshot_id)
        disk_ids = [d.id for _a, d, _sd in await vm_disks(session, vm.id)]
    host = await _live_host(ctx, vm)
    await _delete_merged(ctx, host)  # merges an earlier attempt recorded but did not finish
    await delete_memory(ctx)  # memory volumes an earlier attempt recorded, not yet deleted
    if found is None:
        return {"merged": 0}  # a retry after the snapshot was forgotten
    snapshot = found
    merged = 0
    for disk_id in disk_ids:
        async with ctx.transaction() as session:
            disk = await lookup.get(session, Disk, disk_id)
            domain = await lookup.domain_of(session, disk)
            merge = await merge_of(session, snapshot, disk)
        if merge is None:
            continue  # no volume in this snapshot, or merged by an earlier attempt
        await _merge(ctx, vm, host, domain, merge)
        merged += 1
    # The memory volumes go before the snapshot does: a snapshot no longer listed has
    # nothing left on storage.
    async with ctx.transaction() as session:
        row = await session.get(Snapshot, spec.snapshot_id)
        if row is not None:
            await forget_memory(session, await lookup.get(session, Job, ctx.job.id,
                                                          for_update=True), row)
    await delete_memory(ctx)
    async with ctx.transaction() as session:
        row = await session.get(Snapshot, spec.snapshot_id)
        if row is not None:
            await session.delete(row)
        audit.record(session, f"Snapshot '{snapshot.description}' deletion for VM {vm.name} "
                     "has been completed.", code=audit.SNAPSHOT_REMOVED, vm_id=vm.id,
                     job_id=ctx.job.id, user_id=ctx.job.owner_id)
    return {"merged": merged}


async def _merge(ctx: JobContext, vm: Vm, host: Host | None, domain: StorageDomain,
                 merge: Merge) -> None:
    """Merge one disk's volume, record the disk's new chain, then delete the merged volume."""
    disk = merge.disk

    def at(path: str) -> str:
        return live_location(domain, path)

    if host is not None:
        async with ctx.step(f"Merging a volume of disk {disk.name} of VM {vm.name} live",
                            host_id=host.id):
            await ctx.nodes.call(host, VmBlockCommit(
                vm_id=vm.id, disk=at(disk.image_path), top=at(merge.top), base=at(merge.base),
                shared=domain.storage_type != StorageType.LOCALFS.value), Empty,
                key=ctx.key(f"merge-{disk.id}"), timeout_s=900)
            await volumes_of(domain).after_live_merge(ctx, host, domain, base=merge.base,
                                                      child=merge.child,
                                                      key=f"merged-meta-{disk.id}")
        deleter = host
    else:
        deleter = await volume_host(ctx, domain)
        async with ctx.step(f"Merging a volume of disk {disk.name}", host_id=deleter.id):
            await commit_volume(ctx, deleter, domain, top=merge.top, base=merge.base,
                                base_format=merge.volume.format, child=merge.child,
                                key=f"merge-{disk.id}")
    await _record_merge(ctx, merge)
    await delete_volumes(ctx, deleter, domain, [merge.top], key=f"delete-{disk.id}")
    await _merged_deleted(ctx, disk.id)


async def _record_merge(ctx: JobContext, merge: Merge) -> None:
    """`base` now holds what `top` held: it takes `top`'s place in the chain. The job
    keeps `top` until it is deleted, so a job that dies now leaves it to its successor."""
    async with ctx.transaction() as session:
        volume = await session.get(SnapshotVolume, merge.volume.pk)
        if volume is None:
            return
        job = await lookup.get(session, Job, ctx.job.id, for_update=True)
        job.result = {**job.result, _MERGED: {**job.result.get(_MERGED, {}),
                                              str(merge.disk.id): merge.top}}
        if merge.top_owner is None:
            disk = await lookup.get(session, Disk, merge.disk.id, for_update=True)
            disk.image_path, disk.format = volume.image_path, volume.format
        else:
            owner = await session.get(SnapshotVolume, merge.top_owner.pk)
            if owner is not None:
                owner.image_path, owner.format = volume.image_path, volume.format
        await session.delete(volume)


async def _delete_merged(ctx: JobContext, host: Host | None) -> None:
    """Delete the volumes whose merge was recorded but whose deletion did not happen
    (the job died in between); one already gone counts as deleted."""
    async with ctx.transaction() as session:
        job = await lookup.get(session, Job, ctx.job.id)
        pending = dict(job.result.get(_MERGED, {}))
    for disk_id, top in pending.items():
        async with ctx.transaction() as session:
            disk = await session.get(Disk, uuid.UUID(disk_id))
            domain = None if disk is None else await session.get(
                StorageDomain, disk.storage_domain_id)
        if domain is not None:  # a disk since removed took its volumes along
            deleter = host or await volume_host(ctx, domain)
            await delete_volumes(ctx, deleter, domain, [top], key=f"delete-{disk_id}")
        await _merged_deleted(ctx, uuid.UUID(disk_id))


async def _merged_deleted(ctx: JobContext, disk_id: uuid.UUID) -> None:
    async with ctx.transaction() as session:
        job = await lookup.get(session, Job, ctx.job.id, for_update=True)
        left = {k: v for k, v in job.result.get(_MERGED, {}).items() if k != str(disk_id)}
        job.result = {**job.result, _MERGED: left}


async def remove_failed(session: AsyncSession, ctx: JobContext, spec: RemoveSnapshot,
                        message: str) -> None:
    """Disks already merged keep their new chains (recorded as each merge ended); the
    snapshot, with its volumes that are left, is usable again."""
    snapshot = await session.get(Snapshot, spec.snapshot_id)
    if snapshot is not None:
        snapshot.status = "ok"
        audit.record(session, f"Failed to delete snapshot '{snapshot.description}': {message}",
                     code=audit.SNAPSHOT_REMOVE_FAILED, severity=LogSeverity.ERROR,
                     vm_id=spec.vm_id, job_id=ctx.job.id)


UNITS: dict[type[JobSpec], Unit[Any]] = {
    CreateSnapshot: Unit(create_snapshot, compensate=create_failed),
    RemoveSnapshot: Unit(remove_snapshot, compensate=remove_failed),
}

