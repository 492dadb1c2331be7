"""A VM's disks and disk attachments (changed while the VM is down); NICs: vm_nics."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import (
    Disk,
    DiskAttachment,
    StorageDomain,
    User,
    Vm,
)
from overt.engine.jobs.kinds import CreateDisk, RemoveDisk
from overt.engine.model.errors import Conflict, InvalidInput, NotFound
from overt.engine.model.status import (
    DiskFormat,
    DiskInterface,
    DiskStatus,
    StorageDomainStatus,
    VmStatus,
)
from overt.engine.model.vm_actions import VmAction, check_vm_action
from overt.engine.queries import lookup
from overt.engine.queries.shared_storage import is_shared, new_volume_path
from overt.engine.secrets import SecretBox
from overt.engine.services.inputs import DiskAttachmentInput, DiskInput
from overt.engine.services.jobs import JobSubmitter
from overt.engine.services.lun_disks import add_lun_disk, remove_lun_disk

MAX_DISK_BYTES = 64 << 40


def _devices_changeable(vm: Vm) -> None:
    check_vm_action(VmAction.UPDATE_DEVICES, vm.status, vm_name=vm.name)


def _record(session: AsyncSession, description: str, code: int, vm: Vm, user: User) -> None:
    audit.record_vm_change(session, description, code=code, vm=vm, user=user)


# -- disks -------------------------------------------------------------------------------

async def _new_disk(session: AsyncSession, data: DiskInput, *, default_name: str) -> Disk:
    if data.provisioned_size is None:
        raise InvalidInput("disk.provisioned_size is required (in bytes)")
    if not 1 << 20 <= data.provisioned_size <= MAX_DISK_BYTES:
        raise InvalidInput("disk.provisioned_size must be between 1 MiB and 64 TiB, "
                           f"not {data.provisioned_size}")
    if data.storage_domain is None:
        raise InvalidInput("disk.storage_domains is required: name the storage domain")
    domain = await lookup.resolve(session, StorageDomain, data.storage_domain,
                                  "disk.storage_domains.storage_domain")
    if domain.status != StorageDomainStatus.ACTIVE:
        raise Conflict(f"storage domain {domain.name} is {domain.status}, not active")
    fmt = DiskFormat(data.format) if data.format else DiskFormat.COW
    iso = data.content_type == "iso"
    if iso and data.format == DiskFormat.COW.value:
        raise InvalidInput("an ISO disk is raw: give disk.format raw (or none)")
    if iso:  # an ISO image is read by QEMU as it is: raw, filled by an upload
        fmt = DiskFormat.RAW
    disk_id = uuid.uuid4()
    suffix = "qcow2" if fmt is DiskFormat.COW else "raw"
    image_path = await new_volume_path(session, domain, disk_id, fmt.value,
                                       data.provisioned_size) if is_shared(domain) \
        else f"images/{disk_id}.{suffix}"
    disk = Disk(id=disk_id, name=data.name or default_name, description=data.description or "",
                storage_domain_id=domain.id, provisioned_size=data.provisioned_size,
                format=fmt.value, sparse=True if data.sparse is None else data.sparse,
                status=DiskStatus.LOCKED, image_path=image_path,
                content_type=data.content_type or "data")
    session.add(disk)
    await session.flush()
    return disk


async def _create_job(session: AsyncSession, jobs: JobSubmitter, disk: Disk, user: User,
                      vm: Vm | None = None, copy_from: str | None = None) -> None:
    await jobs.submit(session, CreateDisk(disk_id=disk.id, copy_from=copy_from,
                                          vm_id=vm.id if vm else None),
                      description=f"Creating disk {disk.name}", owner_id=user.id)


async def add_disk(session: AsyncSession, jobs: JobSubmitter, data: DiskInput, user: User,
                   *, copy_from: str | None = None, box: SecretBox | None = None) -> Disk:
    """A floating disk (attached to nothing yet), created by a job (a direct LUN disk needs
    none; `box` seals its target's CHAP password)."""
    if data.lun is not None:
        return await add_lun_disk(session, data, user, box)
    disk = await _new_disk(session, data, default_name="disk")
    await _create_job(session, jobs, disk, user, copy_from=copy_from)
    return disk


async def thin_copy(session: AsyncSession, jobs: JobSubmitter, vm: Vm, base: Disk,
                    template_attachment: DiskAttachment, user: User) -> Disk:
    """A VM's disk as a qcow2 layer over a template's disk (oVirt's thin provisioning), on
    the template disk's domain (local, an NFS volume or an iSCSI extent naming it as its
    backing)."""
    disk_id = uuid.uuid4()
    domain = await lookup.domain_of(session, base)
    image_path = await new_volume_path(session, domain, disk_id, DiskFormat.COW.value,
                                       base.provisioned_size) if is_shared(domain) \
        else f"images/{disk_id}.qcow2"
    disk = Disk(id=disk_id, name=f"{vm.name}_{base.name}", storage_domain_id=base.storage_domain_id,
                provisioned_size=base.provisioned_size, format=DiskFormat.COW.value, sparse=True,
                status=DiskStatus.LOCKED, image_path=image_path, backing_disk_id=base.id)
    session.add(disk)
    await session.flush()
    session.add(DiskAttachment(disk_id=disk.id, vm_id=vm.id,
                               interface=template_attachment.interface,
                               bootable=template_attachment.bootable, active=True))
    await _create_job(session, jobs, disk, user, vm)
    return disk


async def add_disk_attachment(session: AsyncSession, jobs: JobSubmitter, vm: Vm,
                              data: DiskAttachmentInput, user: User,
                              box: SecretBox | None = None) -> DiskAttachment:
    _devices_changeable(vm)
    interface = DiskInterface(data.interface) if data.interface else DiskInterface.VIRTIO
    if data.disk_ref is not None:
        disk = await lookup.resolve(session, Disk, data.disk_ref, "disk_attachment.disk")
        if disk.content_type == "iso":
            raise InvalidInput(f"disk {disk.name} is an ISO image: put it in the VM's cdrom "
                               "(vms/{id}/cdroms) instead of attaching it as a disk")
        if disk.content_type.startswith("memory_"):  # oVirt's AttachDiskToVm refuses them
            raise Conflict(f"Cannot attach disk {disk.name}: it holds a snapshot's saved "
                           f"memory ({disk.content_type}), not a VM's data.")
        attached = (await session.execute(select(DiskAttachment).where(
            DiskAttachment.disk_id == disk.id, DiskAttachment.vm_id.is_not(None)))).scalars().first()
        if attached is not None and not disk.shareable:
            raise Conflict(f"disk {disk.name} is already attached to a VM")
    elif data.disk is not None and data.disk.lun is not None:
        disk = await add_lun_disk(session, data.disk, user, box)
    elif data.disk is not None:
        disk = await _new_disk(session, data.disk, default_name=f"{vm.name}_Disk1")
        await _create_job(session, jobs, disk, user, vm)
    else:
        raise InvalidInput("disk_attachment.disk is required")
    attachment = DiskAttachment(disk_id=disk.id, vm_id=vm.id, interface=interface.value,
                                bootable=bool(data.bootable),
                                active=True if data.active is None else data.active,
                                read_only=bool(data.read_only))
    session.add(attachment)
    vm.spec_version += 1
    await session.flush()
    _record(session, f"Disk {disk.name} was attached to VM {vm.name} by {user.user_name}",
            audit.DISK_ATTACHED, vm, user)
    return attachment


async def get_attachment(session: AsyncSession, vm_id: uuid.UUID, disk_id: uuid.UUID
                         ) -> DiskAttachment:
    found = (await session.execute(select(DiskAttachment).where(
        DiskAttachment.vm_id == vm_id, DiskAttachment.disk_id == disk_id))).scalars().first()
    if found is None:
        raise NotFound(f"VM {vm_id} has no disk attachment {disk_id}")
    return found


async def update_disk_attachment(session: AsyncSession, vm: Vm, disk_id: uuid.UUID,
                                 data: DiskAttachmentInput, user: User) -> DiskAttachment:
    _devices_changeable(vm)
    attachment = await get_attachment(session, vm.id, disk_id)
    if data.interface:
        attachment.interface = DiskInterface(data.interface).value
    if data.bootable is not None:
        attachment.bootable = data.bootable
    if data.active is not None:
        attachment.active = data.active
    if data.read_only is not None:
        attachment.read_only = data.read_only
    vm.spec_version += 1
    _record(session, f"The attachment of disk {disk_id} to VM {vm.name} was updated by "
            f"{user.user_name}", audit.DISK_ATTACHMENT_UPDATED, vm, user)
    return attachment


async def remove_disk_attachment(session: AsyncSession, jobs: JobSubmitter, vm: Vm,
                                 disk_id: uuid.UUID, user: User, *, detach_only: bool) -> None:
    _devices_changeable(vm)
    attachment = await get_attachment(session, vm.id, disk_id)
    await session.delete(attachment)
    vm.spec_version += 1
    disk = await lookup.get(session, Disk, disk_id)
    _record(session, f"Disk {disk.name} was detached from VM {vm.name} by {user.user_name}",
            audit.DISK_DETACHED, vm, user)
    if not detach_only:
        await remove_disk_job(session, jobs, disk, user)


async def remove_disk_job(session: AsyncSession, jobs: JobSubmitter, disk: Disk, user: User
                          ) -> None:
    if disk.storage_domain_id is None:
        await remove_lun_disk(session, disk, user)
        return
    users = (await session.execute(select(DiskAttachment).where(
        DiskAttachment.disk_id == disk.id))).scalars().all()
    if users:
        raise Conflict(f"Cannot remove disk {disk.name}: it is attached to a VM or template")
    in_drive = (await session.execute(select(Vm.name).where(
        Vm.cdrom_current_disk_id == disk.id, Vm.status != VmStatus.DOWN))).scalars().first()
    if in_drive is not None:
        raise Conflict(f"Cannot remove ISO disk {disk.name}: it is in the cdrom of running VM "
                       f"{in_drive}; eject it first.")
    await jobs.submit(session, RemoveDisk(disk_id=disk.id),
                      description=f"Removing disk {disk.name}", owner_id=user.id)
