"""Where the volumes of shared storage domains lie, and the engine's allocation of iSCSI
extents: read by the services that allocate disks and the jobs that create and remove
them."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Disk, StorageDomain
from overt.engine.model.errors import Conflict
from overt.engine.model.status import StorageType
from overt.engine.queries import lookup
from overt.protocol.storage import METADATA_AREA, IscsiLunRef

SHARED_TYPES = frozenset({StorageType.NFS.value, StorageType.ISCSI.value})
MIB = 1 << 20


def is_shared(domain: StorageDomain) -> bool:
    return domain.storage_type in SHARED_TYPES


def volume_path(domain: StorageDomain, image_id: uuid.UUID, volume_id: uuid.UUID) -> str:
    """Where a volume lies, relative to the export: oVirt's SD/images/IMG/VOL."""
    return f"{domain.storage_uuid or domain.id}/images/{image_id}/{volume_id}"


def extent_path(domain: StorageDomain, offset: int, size: int, image_id: uuid.UUID,
                volume_id: uuid.UUID) -> str:
    """A volume of an iSCSI domain: `size` bytes of its LUN from `offset`."""
    return f"{domain.storage_uuid or domain.id}/extents/{offset}/{size}/{image_id}/{volume_id}"


def split_volume_path(image_path: str) -> tuple[uuid.UUID, uuid.UUID]:
    """The image and volume ids of a volume path made by `volume_path` or `extent_path`."""
    parts = image_path.split("/")
    if len(parts) == 4 and parts[1] == "images":
        return uuid.UUID(parts[2]), uuid.UUID(parts[3])
    if len(parts) == 6 and parts[1] == "extents":
        return uuid.UUID(parts[4]), uuid.UUID(parts[5])
    raise ValueError(f"{image_path!r} is not a volume of a shared storage domain")


def extent_of(image_path: str) -> tuple[int, int] | None:
    """The (offset, size) of an iSCSI volume path, None for any other."""
    parts = image_path.split("/")
    if len(parts) == 6 and parts[1] == "extents":
        return int(parts[2]), int(parts[3])
    return None


def lun_of(domain: StorageDomain) -> IscsiLunRef:
    target, _, lun = domain.path.rpartition("/")
    return IscsiLunRef(portal=domain.address or "", target=target, lun=int(lun))


def extent_size(fmt: str, provisioned: int) -> int:
    """Room for a volume: the disk itself, plus a qcow2's metadata (tables and headers)."""
    size = provisioned if fmt != "cow" else provisioned + provisioned // 4096 + 4 * MIB
    return -(-size // MIB) * MIB


async def new_volume_path(session: AsyncSession, domain: StorageDomain, disk_id: uuid.UUID,
                          fmt: str, provisioned: int) -> str:
    """Allocate a new disk's volume: ids on NFS; on iSCSI also the first free extent of
    the LUN large enough (the domain row is locked, so two disks never share one)."""
    if domain.storage_type == StorageType.NFS.value:
        return volume_path(domain, disk_id, uuid.uuid4())
    locked = await lookup.get(session, StorageDomain, domain.id, for_update=True)
    size = extent_size(fmt, provisioned)
    taken = sorted(extent for path in (await session.execute(select(Disk.image_path).where(
        Disk.storage_domain_id == locked.id))).scalars().all()
        if (extent := extent_of(path)) is not None)
    end = METADATA_AREA + locked.used_bytes + locked.available_bytes
    offset = METADATA_AREA
    for start, length in taken:
        if offset + size <= start:
            break
        offset = max(offset, start + length)
    if offset + size > end:
        raise Conflict(f"Cannot add Disk: storage domain {locked.name} has no free extent of "
                       f"{size} bytes (free space: {locked.available_bytes} bytes).")
    locked.used_bytes += size
    locked.available_bytes -= size
    return extent_path(locked, offset, size, disk_id, uuid.uuid4())


def release_extent(domain: StorageDomain, image_path: str) -> None:
    extent = extent_of(image_path)
    if extent is not None:
        domain.used_bytes = max(0, domain.used_bytes - extent[1])
        domain.available_bytes += extent[1]
