"""New disks that will be full copies of others (a template's, a clone's): where they may
go, and their rows, recorded `locked` with a fresh image name before their job runs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Disk, DiskAttachment, StorageDomain
from overt.engine.jobs.kinds import DiskCopy
from overt.engine.model.errors import Conflict
from overt.engine.model.status import DiskFormat, DiskStatus, StorageDomainStatus, StorageType
from overt.engine.queries import lookup
from overt.engine.queries.shared_storage import is_shared, new_volume_path

COPYABLE = frozenset({StorageType.LOCALFS.value, StorageType.NFS.value,
                      StorageType.ISCSI.value})


@dataclass(frozen=True)
class CopyTarget:
    """Where a disk's copy goes and in which format (oVirt's `disk_attachments` overrides)."""

    domain: StorageDomain | None = None  # None: the source's own domain
    format: DiskFormat | None = None  # None: the source's format


async def attachments_of(session: AsyncSession, *, vm_id: uuid.UUID | None = None,
                         template_id: uuid.UUID | None = None
                         ) -> list[tuple[DiskAttachment, Disk]]:
    owner = DiskAttachment.vm_id == vm_id if vm_id is not None \
        else DiskAttachment.template_id == template_id
    rows = await session.execute(select(DiskAttachment, Disk)
                                 .join(Disk, Disk.id == DiskAttachment.disk_id)
                                 .where(owner).order_by(DiskAttachment.pk))
    return [(a, d) for a, d in rows]


def check_sources(what: str, disks: list[Disk]) -> None:
    """Every disk to copy must be ready (not being made or changed by a job)."""
    for disk in disks:
        if disk.status != DiskStatus.OK:
            raise Conflict(f"Cannot {what}: disk {disk.name} is {disk.status}.")


async def new_copy(session: AsyncSession, what: str, source: Disk, target: CopyTarget, *,
                   name: str, template_id: uuid.UUID | None = None) -> tuple[Disk, DiskCopy]:
    """The row of a disk that will be a copy of `source`, and the copy its job makes."""
    source_domain = await lookup.domain_of(session, source)
    domain = target.domain or source_domain
    for checked in (source_domain, domain):
        if checked.storage_type not in COPYABLE:
            raise Conflict(f"Cannot {what}: disk {source.name} would be copied from or to "
                           f"storage domain {checked.name}, of type {checked.storage_type}; "
                           "copies are made on local, NFS and iSCSI domains.")
    if domain.status != StorageDomainStatus.ACTIVE:
        raise Conflict(f"Cannot {what}: storage domain {domain.name} is {domain.status}, "
                       "not active.")
    local = StorageType.LOCALFS.value
    if domain.storage_type == local == source_domain.storage_type \
            and domain.host_id != source_domain.host_id:  # one host makes the copy
        raise Conflict(f"Cannot {what}: disk {source.name} is on the local storage of another "
                       f"host than storage domain {domain.name}.")
    fmt = target.format or DiskFormat(source.format)
    disk_id = uuid.uuid4()
    suffix = "qcow2" if fmt is DiskFormat.COW else "raw"
    if is_shared(domain):
        image_path = await new_volume_path(session, domain, disk_id, fmt.value,
                                           source.provisioned_size)
    else:
        image_path = f"{'templates' if template_id else 'images'}/{disk_id}.{suffix}"
    disk = Disk(id=disk_id, name=name, description=source.description,
                storage_domain_id=domain.id, provisioned_size=source.provisioned_size,
                format=fmt.value, sparse=source.sparse, status=DiskStatus.LOCKED,
                image_path=image_path, template_id=template_id)
    session.add(disk)
    await session.flush()
    return disk, DiskCopy(source=source.id, target=disk.id)
