"""VM snapshots: taking and removing disk-only snapshots (each a job), with their checks.

The submission allocates: it names each disk's new volume, so the job asks its node for
exactly those, however often it is retried. Everything refused here changes nothing.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Disk, Job, Snapshot, SnapshotVolume, StorageDomain, User, Vm
from overt.engine.jobs.kinds import (
    CreateSnapshot,
    EndPreview,
    MemoryVolumes,
    PreviewSnapshot,
    RemoveSnapshot,
    RestoreSnapshot,
)
from overt.engine.model.errors import Conflict, InvalidInput, NotFound
from overt.engine.model.status import DiskStatus, StorageDomainStatus, StorageType, VmStatus
from overt.engine.model.vm_actions import VmAction, check_vm_action
from overt.engine.model.volume_labels import METADATA_BYTES
from overt.engine.queries import lookup
from overt.engine.queries.shared_storage import MIB, allocate_extent, is_shared, volume_path
from overt.engine.queries.snapshot_chains import IN_PREVIEW, PREVIEW, allocate_volume
from overt.engine.queries.vm_spec import vm_disks
from overt.engine.services.jobs import JobSubmitter

# Storage Overt can snapshot, down or running: qcow2 files the domain's host reaches,
# NFS volumes and iSCSI extents (a running VM's QEMU reaches them as files, through its
# own NFS client, or as slices of a LUN through its iSCSI client).
SNAPSHOT_STORAGE = frozenset({StorageType.LOCALFS.value, StorageType.NFS.value,
                              StorageType.ISCSI.value})
# A VM whose memory a snapshot saves: it runs (oVirt's isLiveSnapshotApplicable); of a
# down VM oVirt takes a disk-only snapshot, and so does Overt.
MEMORY_STATES = frozenset({VmStatus.UP, VmStatus.PAUSED})


def memory_volume_size(memory_mib: int) -> int:
    """Room for a guest's saved state: its RAM (QEMU writes every page at most once),
    its devices' own memory (video RAM) and state, and libvirt's header, with margin."""
    size = memory_mib * MIB + memory_mib * MIB // 8 + 256 * MIB
    return -(-size // MIB) * MIB


async def _memory_volumes(session: AsyncSession, vm: Vm,
                          disks: list[tuple[Disk, StorageDomain]]) -> MemoryVolumes:
    """The memory dump and metadata volumes, allocated now on the domain of the VM's
    first disk, every disk being on a shared domain (oVirt puts them on a data domain of
    the VM's data center): on NFS their ids, on iSCSI their extents too, reserved until
    the snapshot records them."""
    local = next((d for d, sd in disks if not is_shared(sd)), None)
    if local is not None:
        raise Conflict(f"Cannot create a snapshot with memory of VM {vm.name}: its disk "
                       f"{local.name} is not on an NFS or iSCSI domain, and the memory is "
                       "kept with the disks on a shared data domain (so that any host can "
                       "resume the VM); take a snapshot without memory.")
    domain = disks[0][1]
    size = memory_volume_size(vm.memory_mib)
    paths = []
    for what, nbytes in (("memory", size), ("memory metadata", METADATA_BYTES)):
        image_id = uuid.uuid4()
        if domain.storage_type == StorageType.ISCSI.value:
            paths.append(await allocate_extent(session, domain, image_id, "raw", nbytes,
                                               reserve=True, what=f"the snapshot's {what}"))
        else:
            paths.append(volume_path(domain, image_id, uuid.uuid4()))
    return MemoryVolumes(storage_domain_id=domain.id, volume=paths[0],
                         metadata_volume=paths[1], size_bytes=size)


def active_snapshot_id(vm_id: uuid.UUID) -> uuid.UUID:
    """The id of a VM's `Active VM` snapshot (the VM as it runs), stable for its life."""
    return uuid.uuid5(vm_id, "active")


def _check_disk(vm: Vm, disk: Disk, domain: StorageDomain) -> None:
    if domain.status != StorageDomainStatus.ACTIVE:
        raise Conflict(f"Cannot create or remove a snapshot of VM {vm.name}: storage domain "
                       f"{domain.name} of disk {disk.name} is {domain.status}; activate it "
                       "first.")
    if domain.storage_type not in SNAPSHOT_STORAGE:
        raise Conflict(f"Cannot snapshot VM {vm.name}: disk {disk.name} is on a "
                       f"{domain.storage_type} domain; Overt snapshots disks on local, "
                       "NFS and iSCSI domains only for now.")
    if disk.status != DiskStatus.OK:
        raise Conflict(f"Cannot snapshot VM {vm.name}: disk {disk.name} is {disk.status}.")


async def _down_vm_for_snapshots(session: AsyncSession, vm_id: uuid.UUID, what: str) -> Vm:
    vm = await _vm_for_snapshots(session, vm_id)
    if vm.status != VmStatus.DOWN:
        raise Conflict(f"Cannot {what} of VM {vm.name}: the VM is {vm.status}; shut it down "
                       "first.")
    return vm


async def _vm_for_snapshots(session: AsyncSession, vm_id: uuid.UUID) -> Vm:
    vm = await lookup.get(session, Vm, vm_id, for_update=True)
    check_vm_action(VmAction.SNAPSHOT, vm.status, vm_name=vm.name)
    if vm.origin == "external":
        raise Conflict(f"VM {vm.name} is external (not created by Overt); it has no snapshots")
    busy = (await session.execute(select(Snapshot).where(
        Snapshot.vm_id == vm.id, Snapshot.status != "ok"))).scalars().first()
    if busy is not None and busy.status == IN_PREVIEW:
        raise Conflict(f"Cannot change the snapshots of VM {vm.name}: it is previewing "
                       f"snapshot '{busy.description}'; commit or undo the preview first.")
    if busy is not None:
        raise Conflict(f"Cannot change the snapshots of VM {vm.name}: snapshot "
                       f"'{busy.description}' is being changed; try again when it is done.")
    return vm


async def _snapshot_disks(session: AsyncSession, vm: Vm, snapshot: Snapshot
                          ) -> list[tuple[Disk, StorageDomain]]:
    """The disks with a volume in `snapshot`, each checked as a snapshot action needs."""
    rows = [(disk, domain) for disk, domain in await session.execute(
        select(Disk, StorageDomain).join(SnapshotVolume, SnapshotVolume.disk_id == Disk.id)
        .join(StorageDomain, StorageDomain.id == Disk.storage_domain_id)
        .where(SnapshotVolume.snapshot_id == snapshot.id))]
    for disk, domain in rows:
        _check_disk(vm, disk, domain)
    return rows


async def _overlays(session: AsyncSession, rows: list[tuple[Disk, StorageDomain]]
                    ) -> dict[str, str]:
    """A new volume for each disk, named (on iSCSI: its extent reserved) now so that every
    retry of the job makes it."""
    return {str(disk.id): await allocate_volume(session, disk, domain) for disk, domain in rows}


async def add_snapshot(session: AsyncSession, jobs: JobSubmitter, vm_id: uuid.UUID,
                       description: str, user: User, *, persist_memory: bool = False,
                       ) -> tuple[Snapshot, Job]:
    if len(description) > 4000:
        raise InvalidInput("snapshot.description is longer than 4000 characters")
    vm = await _vm_for_snapshots(session, vm_id)
    disks = [(d, sd) for _a, d, sd in await vm_disks(session, vm.id) if not d.shareable]
    if not disks:
        raise Conflict(f"Cannot create a snapshot of VM {vm.name}: it has no disk to snapshot.")
    for disk, domain in disks:
        _check_disk(vm, disk, domain)
    memory = await _memory_volumes(session, vm, disks) \
        if persist_memory and vm.status in MEMORY_STATES else None
    snapshot = Snapshot(id=uuid.uuid4(), vm_id=vm.id, description=description,
                        status="locked")
    session.add(snapshot)
    await session.flush()
    job = await jobs.submit(session, CreateSnapshot(vm_id=vm.id, snapshot_id=snapshot.id,
                                                    overlays=await _overlays(session, disks),
                                                    memory=memory),
                            description=f"Creating VM Snapshot {description} for VM {vm.name}",
                            owner_id=user.id)
    audit.record(session, f"Snapshot '{description}' creation for VM {vm.name} was initiated "
                 f"by {user.user_name}.", code=audit.SNAPSHOT_REQUESTED, vm_id=vm.id,
                 job_id=job.id, user_id=user.id)
    return snapshot, job


async def get_snapshot(session: AsyncSession, vm_id: uuid.UUID, snapshot_id: uuid.UUID
                       ) -> Snapshot:
    snapshot = await session.get(Snapshot, snapshot_id)
    if snapshot is None or snapshot.vm_id != vm_id:
        raise NotFound(f"VM {vm_id} has no snapshot {snapshot_id}")
    return snapshot


async def remove_snapshot(session: AsyncSession, jobs: JobSubmitter, vm_id: uuid.UUID,
                          snapshot_id: uuid.UUID, user: User) -> Job:
    await lookup.get(session, Vm, vm_id)
    if snapshot_id == active_snapshot_id(vm_id):
        raise Conflict("Cannot remove the Active VM snapshot: it is the VM itself.")
    snapshot = await get_snapshot(session, vm_id, snapshot_id)
    vm = await _vm_for_snapshots(session, vm_id)
    await _snapshot_disks(session, vm, snapshot)
    snapshot.status = "locked"
    job = await jobs.submit(session, RemoveSnapshot(vm_id=vm.id, snapshot_id=snapshot.id),
                            description=f"Removing Snapshot {snapshot.description} of VM "
                            f"{vm.name}", owner_id=user.id)
    audit.record(session, f"Snapshot '{snapshot.description}' deletion for VM {vm.name} was "
                 f"initiated by {user.user_name}.", code=audit.SNAPSHOT_REMOVE_REQUESTED,
                 vm_id=vm.id, job_id=job.id, user_id=user.id)
    return job


async def restore_snapshot(session: AsyncSession, jobs: JobSubmitter, vm_id: uuid.UUID,
                           snapshot_id: uuid.UUID, user: User, *,
                           restore_memory: bool = False) -> Job:
    """oVirt's restore on a down VM: its disks read the snapshot again; the snapshots
    taken after it are dropped with their volumes."""
    if snapshot_id == active_snapshot_id(vm_id):
        await lookup.get(session, Vm, vm_id)  # an unknown VM is a 404 before this 409
        raise Conflict("Cannot restore the Active VM snapshot: the VM already runs from it.")
    snapshot = await get_snapshot(session, vm_id, snapshot_id)
    vm = await _down_vm_for_snapshots(session, vm_id, "restore a snapshot")
    rows = await _snapshot_disks(session, vm, snapshot)
    in_snapshot = [disk.id for disk, _domain in rows]
    later = (await session.execute(
        select(Disk.name).join(SnapshotVolume, SnapshotVolume.disk_id == Disk.id)
        .join(Snapshot, Snapshot.id == SnapshotVolume.snapshot_id)
        .where(Snapshot.vm_id == vm.id, Snapshot.created_at > snapshot.created_at,
               SnapshotVolume.disk_id.not_in(in_snapshot)))).scalars().first()
    if later is not None:
        raise Conflict(f"Cannot restore snapshot '{snapshot.description}' of VM {vm.name}: "
                       f"disk {later} was added after it and has later snapshots; remove "
                       "them first.")
    snapshot.status = "locked"
    job = await jobs.submit(session, RestoreSnapshot(
        vm_id=vm.id, snapshot_id=snapshot.id, overlays=await _overlays(session, rows),
        restore_memory=restore_memory and snapshot.memory_volume is not None),
                            description=f"Restoring VM {vm.name} from Snapshot "
                            f"{snapshot.description}", owner_id=user.id)
    audit.record(session, f"Restoring VM {vm.name} from Snapshot '{snapshot.description}' was "
                 f"initiated by {user.user_name}.", vm_id=vm.id, job_id=job.id, user_id=user.id)
    return job


async def preview_snapshot(session: AsyncSession, jobs: JobSubmitter, vm_id: uuid.UUID,
                           snapshot_id: uuid.UUID, user: User, *,
                           restore_memory: bool = False) -> Job:
    """oVirt's previewsnapshot on a down VM: it runs from the snapshot until the preview is
    committed or undone; its volumes until then are kept (the `preview` snapshot)."""
    if snapshot_id == active_snapshot_id(vm_id):
        await lookup.get(session, Vm, vm_id)  # an unknown VM is a 404 before this 409
        raise Conflict("Cannot preview the Active VM snapshot: the VM already runs from it.")
    snapshot = await get_snapshot(session, vm_id, snapshot_id)
    vm = await _down_vm_for_snapshots(session, vm_id, "preview a snapshot")
    rows = await _snapshot_disks(session, vm, snapshot)
    preview = Snapshot(id=uuid.uuid4(), vm_id=vm.id, kind=PREVIEW, status="locked",
                       description="Active VM before the preview", preview_of=snapshot.id)
    session.add(preview)
    snapshot.status = "locked"
    await session.flush()
    job = await jobs.submit(session, PreviewSnapshot(
        vm_id=vm.id, snapshot_id=snapshot.id, preview_id=preview.id,
        overlays=await _overlays(session, rows),
        restore_memory=restore_memory and snapshot.memory_volume is not None),
        description=f"Previewing Snapshot {snapshot.description} of VM {vm.name}",
        owner_id=user.id)
    audit.record(session, f"Previewing Snapshot '{snapshot.description}' of VM {vm.name} was "
                 f"initiated by {user.user_name}.", vm_id=vm.id, job_id=job.id, user_id=user.id)
    return job


async def end_preview(session: AsyncSession, jobs: JobSubmitter, vm_id: uuid.UUID,
                      user: User, *, commit: bool) -> Job:
    """oVirt's commitsnapshot (keep what the VM previews) or undosnapshot (go back)."""
    vm = await lookup.get(session, Vm, vm_id, for_update=True)
    what = "commit" if commit else "undo"
    previewed = (await session.execute(select(Snapshot).where(
        Snapshot.vm_id == vm.id, Snapshot.status == IN_PREVIEW))).scalars().first()
    if previewed is None:
        raise Conflict(f"Cannot {what} a preview of VM {vm.name}: it previews no snapshot.")
    if vm.status != VmStatus.DOWN:
        raise Conflict(f"Cannot {what} the preview of VM {vm.name}: the VM is {vm.status}; "
                       "shut it down first.")
    previewed.status = "locked"
    job = await jobs.submit(session, EndPreview(vm_id=vm.id, snapshot_id=previewed.id,
                                                commit=commit),
                            description=f"{'Committing' if commit else 'Undoing'} the preview "
                            f"of Snapshot {previewed.description} of VM {vm.name}",
                            owner_id=user.id)
    audit.record(session, f"{'Committing' if commit else 'Undoing'} the preview of Snapshot "
                 f"'{previewed.description}' of VM {vm.name} was initiated by "
                 f"{user.user_name}.", vm_id=vm.id, job_id=job.id, user_id=user.id)
    return job
