"""A VM's cdrom (oVirt's `vms/{id}/cdroms`): the ISO disk in its drive.

Without `current` a change is the VM's next-run configuration (what its next start puts in
the drive); with `current` it changes the media of the running VM, by a `vm.cdrom` job.
An empty file id ejects. Only ISO disks (content type `iso`) that are ready, on a storage
domain of the VM's data center, go in a drive.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Cluster, Disk, Job, User, Vm
from overt.engine.jobs.kinds import ChangeVmCdrom
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.model.status import DiskStatus, StorageType, VmStatus
from overt.engine.queries import lookup
from overt.engine.services.jobs import JobSubmitter

# oVirt gives every VM one cdrom, with this id.
CDROM_ID = uuid.UUID(int=0)
ISO = "iso"
# Where the media of a running VM can change (its drive exists and QEMU answers).
LIVE = frozenset({VmStatus.UP, VmStatus.POWERING_UP, VmStatus.PAUSED})


def cdrom_disk_id(vm: Vm, *, current: bool) -> uuid.UUID | None:
    """The ISO disk in the drive: of the running VM (`current`) or of its next run."""
    if current and vm.status is not VmStatus.DOWN:
        return vm.cdrom_current_disk_id
    return vm.cdrom_disk_id


async def iso_disk(session: AsyncSession, vm: Vm, file_id: str) -> Disk:
    """The ISO disk `file_id` names, if the VM may have it in its drive; else 4xx."""
    try:
        disk_id = uuid.UUID(file_id)
    except ValueError:
        raise InvalidInput(f"cdrom.file.id {file_id!r} is not the id of an ISO disk") from None
    disk = await session.get(Disk, disk_id)
    if disk is None:
        raise InvalidInput(f"Cannot change the CD of VM {vm.name}: there is no ISO disk "
                           f"{file_id}.")
    if disk.content_type != ISO:
        raise InvalidInput(f"Cannot change the CD of VM {vm.name}: disk {disk.name} is not an "
                           "ISO image (its content type is "
                           f"{disk.content_type}); upload the ISO as a disk of content type iso.")
    if disk.status != DiskStatus.OK:
        raise Conflict(f"Cannot change the CD of VM {vm.name}: ISO disk {disk.name} is "
                       f"{disk.status}; wait until it is ok.")
    domain = await lookup.domain_of(session, disk)
    cluster = await lookup.get(session, Cluster, vm.cluster_id)
    if domain.data_center_id != cluster.data_center_id:
        raise InvalidInput(f"Cannot change the CD of VM {vm.name}: ISO disk {disk.name} is on "
                           f"storage domain {domain.name}, outside the VM's data center.")
    if domain.storage_type == StorageType.LOCALFS.value and vm.host_id is not None \
            and vm.status is not VmStatus.DOWN and domain.host_id != vm.host_id:
        raise InvalidInput(f"Cannot change the CD of VM {vm.name}: ISO disk {disk.name} is on "
                           f"local storage domain {domain.name} of another host than the VM's.")
    return disk


async def iso_host(session: AsyncSession, disk_id: uuid.UUID) -> tuple[uuid.UUID | None, str]:
    """The host an ISO disk binds a VM to: that of its local storage domain, if it is one."""
    disk = await lookup.get(session, Disk, disk_id)
    domain = await lookup.domain_of(session, disk)
    if domain.storage_type == StorageType.LOCALFS.value and domain.host_id is not None:
        return domain.host_id, f"ISO {disk.name} is on local storage of another host"
    return None, ""


async def update_cdrom(session: AsyncSession, jobs: JobSubmitter, vm: Vm, file_id: str | None,
                       user: User | None, *, current: bool) -> Job | None:
    """Put ISO disk `file_id` (None or empty: nothing) in the VM's cdrom; with `current`
    the running VM's, by the returned job."""
    disk = await iso_disk(session, vm, file_id) if file_id else None
    disk_id = disk.id if disk is not None else None
    by = f" by {user.user_name}" if user is not None else ""
    what = f"CD {disk.name}" if disk is not None else "an empty CD drive"
    if not current:
        vm.cdrom_disk_id = disk_id
        vm.spec_version += 1
        audit.record(session, f"VM {vm.name} was set to run with {what}{by}",
                     code=audit.CDROM_CHANGED if disk else audit.CDROM_EJECTED, vm_id=vm.id,
                     cluster_id=vm.cluster_id, user_id=user.id if user else None)
        return None
    if vm.status not in LIVE:
        raise Conflict(f"Cannot change the CD of VM {vm.name}: the VM is {vm.status}; change "
                       "the media of a running VM only (without current=true to change its "
                       "next run).")
    previous = vm.cdrom_current_disk_id
    vm.cdrom_current_disk_id = disk_id
    await session.flush()
    return await jobs.submit(
        session, ChangeVmCdrom(vm_id=vm.id, disk_id=disk_id, previous_disk_id=previous,
                               host_id=vm.host_id),
        description=f"{'Changing' if disk else 'Ejecting'} the CD of VM {vm.name}",
        owner_id=user.id if user else None)
