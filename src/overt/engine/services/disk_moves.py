"""oVirt's disk `copy` and `move`: what may be copied or moved where, checked before
anything changes, and the job that does it (`jobs.handlers.disk_moves`).

A disk of a down VM (or a floating one) is copied or moved offline. A disk a running VM
uses is moved live (oVirt's live storage migration), between NFS and iSCSI domains,
while the VM is `up`: the VM keeps running and its QEMU mirrors the disk to the target.
A copy is of disks no running VM uses; a disk with snapshots is copied as it is now (its
chain collapsed into the new disk, as oVirt's copy does), and moved (its VM down) with
its chain, each volume over the one under it on the target.

A refusal is a 409 with nothing changed. Accepted, the disk is `locked` (and the VMs it
is attached to are locked by the job, a running one staying `up`) until the job ends.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import (
    Disk,
    DiskAttachment,
    Job,
    Snapshot,
    SnapshotVolume,
    StorageDomain,
    User,
    Vm,
)
from overt.engine.jobs.kinds import CopyDisk, MoveDisk, MovedLayer
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.model.status import (
    DiskFormat,
    DiskStatus,
    StorageDomainStatus,
    StorageType,
    VmStatus,
)
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref
from overt.engine.queries.shared_storage import allocate_extent, volume_path
from overt.engine.queries.snapshot_chains import IN_PREVIEW, snapshot_volumes
from overt.engine.services.disk_copies import CopyTarget, new_copy
from overt.engine.services.jobs import JobSubmitter


async def _attached_vms(session: AsyncSession, disk: Disk) -> list[tuple[Vm, bool]]:
    """The VMs the disk is attached to, each with whether the attachment is active (an
    inactive disk is not in the VM's running domain)."""
    rows = await session.execute(select(Vm, DiskAttachment.active).join(
        DiskAttachment, DiskAttachment.vm_id == Vm.id).where(
        DiskAttachment.disk_id == disk.id).order_by(Vm.id))
    return [(vm, active) for vm, active in rows]


async def _check_disk(session: AsyncSession, what: str, disk: Disk
                      ) -> tuple[list[Vm], Vm | None]:
    """The disk may be copied or moved now; the VMs it is attached to, and the running VM
    that uses it (whose QEMU must move it live), if any."""
    if disk.storage_domain_id is None:
        raise Conflict(f"Cannot {what} disk {disk.name}: it is a direct LUN disk, which has "
                       "no volume on a storage domain.")
    if disk.shareable:
        raise Conflict(f"Cannot {what} disk {disk.name}: it is shareable; shareable disks "
                       "are not copied or moved.")
    if disk.status != DiskStatus.OK:
        raise Conflict(f"Cannot {what} disk {disk.name}: it is {disk.status}, not ok.")
    snapshots = (await session.execute(select(SnapshotVolume.snapshot_id).where(
        SnapshotVolume.disk_id == disk.id))).scalars().all()
    previewed = (await session.execute(select(Snapshot.description).where(
        Snapshot.id.in_(snapshots), Snapshot.status == IN_PREVIEW))).scalars().first() \
        if snapshots else None
    if previewed is not None:
        raise Conflict(f"Cannot {what} disk {disk.name}: its VM previews snapshot "
                       f"'{previewed}'; commit or undo the preview first.")
    attached = await _attached_vms(session, disk)
    running = [vm for vm, active in attached if active and vm.status != VmStatus.DOWN]
    if running and what != "move":
        vm = running[0]
        raise Conflict(f"Cannot {what} disk {disk.name}: it is attached to VM {vm.name}, "
                       f"which is {vm.status}. Overt copies disks of down VMs only (a "
                       "running VM's disk may be moved): stop the VM first.")
    if running and snapshots:
        raise Conflict(f"Cannot move disk {disk.name} while VM {running[0].name} runs: it has "
                       "snapshots, and Overt moves a disk's snapshot chain only while its VM "
                       "is down. Stop the VM, or remove the snapshots first.")
    if running and running[0].status != VmStatus.UP:
        vm = running[0]
        raise Conflict(f"Cannot move disk {disk.name}: it is attached to VM {vm.name}, which "
                       f"is {vm.status}. A disk in use is moved live only while its VM is "
                       "up: wait until it is up, or stop it.")
    return [vm for vm, _active in attached], running[0] if running else None


async def _target_domain(session: AsyncSession, what: str, disk: Disk, ref: Ref | None
                         ) -> tuple[StorageDomain, StorageDomain]:
    """The disk's domain and the target domain, which must be able to take it."""
    if ref is None:
        raise InvalidInput("action.storage_domain is required: name the target storage domain")
    domain = await lookup.resolve(session, StorageDomain, ref, "action.storage_domain")
    source = await lookup.domain_of(session, disk)
    if domain.type != "data":
        raise Conflict(f"Cannot {what} disk {disk.name}: storage domain {domain.name} is an "
                       f"{domain.type} domain, not a data domain.")
    if domain.data_center_id != source.data_center_id:
        raise Conflict(f"Cannot {what} disk {disk.name}: storage domain {domain.name} is not "
                       f"in the data center of storage domain {source.name}.")
    return source, domain


def _check_room(what: str, disk: Disk, domain: StorageDomain) -> None:
    """The target's free space takes the copy (an iSCSI extent is checked as it is
    allocated): a sparse disk needs what it holds now, a preallocated one its size."""
    if domain.storage_type == StorageType.ISCSI.value:
        return
    needed = max(disk.actual_size, 1) if disk.sparse else disk.provisioned_size
    if domain.available_bytes < needed:
        raise Conflict(f"Cannot {what} disk {disk.name}: storage domain {domain.name} has "
                       f"{domain.available_bytes} bytes free, and the disk needs {needed}.")


async def copy_disk(session: AsyncSession, jobs: JobSubmitter, disk_id: uuid.UUID,
                    target: Ref | None, name: str | None, user: User, *,
                    correlation_id: str | None = None) -> Job:
    """oVirt's CopyImageGroup: a new floating disk on `target`, named `name` (else the
    source's name), a flattened copy of the disk; the source stays as it is."""
    disk = await lookup.get(session, Disk, disk_id, for_update=True)
    vms, _running = await _check_disk(session, "copy", disk)
    source, domain = await _target_domain(session, "copy", disk, target)
    _check_room("copy", disk, domain)
    copy_row, copy = await new_copy(session, "copy disk", disk, CopyTarget(domain=domain),
                                    name=name or disk.name)
    copy_row.content_type = disk.content_type
    disk.status = DiskStatus.LOCKED
    job = await jobs.submit(session, CopyDisk(disk_copy=copy, vm_ids=tuple(vm.id for vm in vms)),
                            description=f"Copying disk {disk.name} to storage domain "
                            f"{domain.name}", owner_id=user.id, correlation_id=correlation_id)
    audit.record(session, f"User {user.user_name} is copying disk {disk.name} from storage "
                 f"domain {source.name} to {domain.name} (as disk {copy_row.name})",
                 code=audit.DISK_COPYING, storage_domain_id=domain.id, job_id=job.id,
                 user_id=user.id)
    return job


async def move_disk(session: AsyncSession, jobs: JobSubmitter, disk_id: uuid.UUID,
                    target: Ref | None, user: User, *,
                    correlation_id: str | None = None) -> Job:
    """oVirt's MoveDisk: the disk keeps its id and its attachments, its volume goes to
    `target` and leaves its domain; a disk a running VM uses is moved live."""
    disk = await lookup.get(session, Disk, disk_id, for_update=True)
    vms, running = await _check_disk(session, "move", disk)
    source, domain = await _target_domain(session, "move", disk, target)
    await _check_move(session, disk, source, domain)
    if running is not None:
        _check_live(disk, running, source, domain)
    _check_room("move", disk, domain)
    chain = [MovedLayer(pk=volume.pk, source_path=volume.image_path, format=volume.format,
                        target_path=await _new_path(session, domain, disk, volume.format))
             for volume in await snapshot_volumes(session, disk.id)]
    target_path = await _new_path(session, domain, disk, disk.format)
    spec = MoveDisk(disk_id=disk.id, source_domain_id=source.id, source_path=disk.image_path,
                    target_domain_id=domain.id, target_path=target_path,
                    vm_ids=tuple(vm.id for vm in vms),
                    live_vm_id=running.id if running is not None else None, chain=tuple(chain))
    disk.status = DiskStatus.LOCKED
    job = await jobs.submit(session, spec, description=f"Moving disk {disk.name} to storage "
                            f"domain {domain.name}", owner_id=user.id,
                            correlation_id=correlation_id)
    live = f" while VM {running.name} runs" if running is not None else ""
    audit.record(session, f"User {user.user_name} is moving disk {disk.name} from storage "
                 f"domain {source.name} to {domain.name}{live}", code=audit.DISK_MOVING,
                 storage_domain_id=domain.id, job_id=job.id, user_id=user.id)
    return job


def _check_live(disk: Disk, vm: Vm, source: StorageDomain, domain: StorageDomain) -> None:
    """What a live move refuses beyond an offline one's checks: QEMU mirrors a disk
    between the shared domains it reaches by its own clients."""
    shared = (StorageType.NFS.value, StorageType.ISCSI.value)
    for checked in (source, domain):
        if checked.storage_type not in shared:
            raise Conflict(f"Cannot move disk {disk.name} while VM {vm.name} runs: storage "
                           f"domain {checked.name} is of type {checked.storage_type}; a disk "
                           "in use is moved live between NFS and iSCSI domains only. Stop "
                           "the VM to move it.")
    if vm.host_id is None:
        raise Conflict(f"Cannot move disk {disk.name}: VM {vm.name} runs on no known host.")


async def _check_move(session: AsyncSession, disk: Disk, source: StorageDomain,
                      domain: StorageDomain) -> None:
    """What a move refuses beyond a copy's checks."""
    if domain.id == source.id:
        raise Conflict(f"Cannot move disk {disk.name}: it is already on storage domain "
                       f"{domain.name}.")
    if disk.template_id is not None:
        raise Conflict(f"Cannot move disk {disk.name}: it is a template's disk, which VMs "
                       "build on; Overt does not move template disks yet.")
    if disk.backing_disk_id is not None:
        raise Conflict(f"Cannot move disk {disk.name}: it is a thin layer over a template's "
                       "disk, which would have to be on the target domain too; Overt does "
                       "not move such disks yet (copy it, or clone its VM, instead).")
    copyable = (StorageType.LOCALFS.value, StorageType.NFS.value, StorageType.ISCSI.value)
    for checked in (source, domain):
        if checked.storage_type not in copyable:
            raise Conflict(f"Cannot move disk {disk.name}: storage domain {checked.name} is "
                           f"of type {checked.storage_type}; disks are moved between local, "
                           "NFS and iSCSI domains.")
    if StorageType.LOCALFS.value == source.storage_type == domain.storage_type \
            and source.host_id != domain.host_id:
        raise Conflict(f"Cannot move disk {disk.name}: storage domains {source.name} and "
                       f"{domain.name} are local to different hosts.")
    if domain.status != StorageDomainStatus.ACTIVE:
        raise Conflict(f"Cannot move disk {disk.name}: storage domain {domain.name} is "
                       f"{domain.status}, not active.")
    in_drive = (await session.execute(select(Vm.name).where(
        Vm.cdrom_current_disk_id == disk.id, Vm.status != VmStatus.DOWN))).scalars().first()
    if in_drive is not None:
        raise Conflict(f"Cannot move ISO disk {disk.name}: it is in the cdrom of running VM "
                       f"{in_drive}; eject it first.")


async def _new_path(session: AsyncSession, domain: StorageDomain, disk: Disk,
                    fmt: str) -> str:
    """A volume of the disk (of format `fmt`) on the target: a new NFS volume of the
    disk's image there, a reserved extent of the LUN (held until the disk records it or
    the job gives it up), or a new file in the local domain's images directory."""
    if domain.storage_type == StorageType.NFS.value:
        return volume_path(domain, disk.id, uuid.uuid4())
    if domain.storage_type == StorageType.ISCSI.value:
        return await allocate_extent(session, domain, disk.id, fmt,
                                     disk.provisioned_size, reserve=True,
                                     what=f"a volume for moving disk {disk.name}")
    suffix = "qcow2" if fmt == DiskFormat.COW.value else "raw"
    return f"images/{uuid.uuid4()}.{suffix}"

