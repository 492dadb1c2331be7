"""A disk's chain of volumes as the database records it (the allocation authority): what
storage must hold, base first, and where a snapshot's volume sits in it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Disk, Snapshot, SnapshotVolume, StorageDomain
from overt.engine.model.status import StorageType
from overt.engine.queries.shared_storage import (
    allocate_extent,
    extent_of,
    split_volume_path,
    volume_path,
)
from overt.protocol.storage import extent_location

PREVIEW = "preview"  # a snapshot's kind: the VM's volumes before a preview
IN_PREVIEW = "in_preview"  # a snapshot's status while the VM previews it


def volume_location(domain: StorageDomain, image_path: str) -> str:
    return f"{domain.path.rstrip('/')}/{image_path}"


def live_location(domain: StorageDomain, image_path: str) -> str:
    """A volume as a running VM's host names it in its live chains: a file's or an NFS
    volume's path, or an iSCSI volume's LUN and slice (`extent_location`)."""
    extent = extent_of(image_path)
    if domain.storage_type == StorageType.ISCSI.value and extent is not None:
        target, _, lun = domain.path.rpartition("/")
        return extent_location(target, int(lun), *extent)
    return volume_location(domain, image_path)


def new_volume_path(disk: Disk, domain: StorageDomain, volume_id: uuid.UUID) -> str:
    """A new volume of `disk`, next to its other volumes in its domain (on NFS: a volume
    of the disk's image, oVirt's SD/images/IMG/VOL)."""
    if domain.storage_type == StorageType.NFS.value:
        return volume_path(domain, split_volume_path(disk.image_path)[0], volume_id)
    folder = disk.image_path.rsplit("/", 1)[0] if "/" in disk.image_path else ""
    return f"{folder}/{volume_id}.qcow2" if folder else f"{volume_id}.qcow2"


async def allocate_volume(session: AsyncSession, disk: Disk, domain: StorageDomain) -> str:
    """A new qcow2 volume of `disk` in its domain: on iSCSI an extent of the LUN, held
    (`ExtentReservation`) until the disk's chain records it or its job gives it up."""
    if domain.storage_type == StorageType.ISCSI.value:
        return await allocate_extent(session, domain, split_volume_path(disk.image_path)[0],
                                     "cow", disk.provisioned_size, reserve=True,
                                     what=f"a volume of disk {disk.name}")
    return new_volume_path(disk, domain, uuid.uuid4())


async def snapshot_volumes(session: AsyncSession, disk_id: uuid.UUID) -> list[SnapshotVolume]:
    """The disk's frozen volumes in its chain, base first (the active one, `Disk.image_path`,
    is over them). While a snapshot is previewed, the chain ends at its volume: the volumes
    of later snapshots and those kept to undo the preview are off it until then."""
    rows = (await session.execute(
        select(SnapshotVolume, Snapshot).join(Snapshot, Snapshot.id == SnapshotVolume.snapshot_id)
        .where(SnapshotVolume.disk_id == disk_id).order_by(SnapshotVolume.pk))).all()
    previewed = {snapshot.preview_of for _v, snapshot in rows if snapshot.kind == PREVIEW}
    chain = []
    for volume, snapshot in rows:
        if snapshot.kind == PREVIEW:
            continue
        chain.append(volume)
        if snapshot.id in previewed:
            break
    return chain


async def off_chain_volumes(session: AsyncSession, disk_id: uuid.UUID) -> list[SnapshotVolume]:
    """The disk's volumes a preview keeps off its chain (newest first): what committing the
    preview deletes."""
    on_chain = {v.pk for v in await snapshot_volumes(session, disk_id)}
    rows = (await session.execute(select(SnapshotVolume).where(
        SnapshotVolume.disk_id == disk_id).order_by(SnapshotVolume.pk.desc()))).scalars()
    return [v for v in rows if v.pk not in on_chain]


async def disk_chain(session: AsyncSession, disk: Disk) -> list[str]:
    """The disk's own volumes, base first and active last, as paths in its domain."""
    return [v.image_path for v in await snapshot_volumes(session, disk.id)] + [disk.image_path]


async def all_volumes(session: AsyncSession, disk: Disk) -> list[str]:
    """Every volume of the disk on storage, its chain's and those off it, newest first."""
    chain = await disk_chain(session, disk)
    return [*reversed(chain), *(v.image_path for v in await off_chain_volumes(session, disk.id))]


async def volume_parents(session: AsyncSession, disk: Disk) -> list[tuple[str, str | None, str]]:
    """Every volume of the disk on storage with the volume under it (None for the base of
    a disk not over a template's) and its format: its chain's, then those a preview keeps
    off it (each over the one recorded before it)."""
    chain = await snapshot_volumes(session, disk.id)
    under: str | None = None
    if disk.backing_disk_id is not None:
        base = await session.get(Disk, disk.backing_disk_id)
        under = base.image_path if base is not None else None
    found: list[tuple[str, str | None, str]] = []
    for volume in chain:
        found.append((volume.image_path, under, volume.format))
        under = volume.image_path
    found.append((disk.image_path, under, disk.format))
    on_chain = {v.pk for v in chain}
    everything = (await session.execute(select(SnapshotVolume).where(
        SnapshotVolume.disk_id == disk.id).order_by(SnapshotVolume.pk))).scalars().all()
    before: str | None = None
    for volume in everything:
        if volume.pk not in on_chain:
            found.append((volume.image_path, before, volume.format))
        before = volume.image_path
    return found


@dataclass(frozen=True)
class Merge:
    """Removing one disk's volume of a snapshot: `top`, the volume over it, is merged into
    it (`base`); `child`, the volume over `top` (None when `top` is active), is rebased."""

    disk: Disk
    volume: SnapshotVolume
    top: str
    child: str | None
    # The row that owns `top` (None: the disk's active volume); it takes `base` after.
    top_owner: SnapshotVolume | None

    @property
    def base(self) -> str:
        return self.volume.image_path

    @property
    def live_top_is_active(self) -> bool:
        return self.top_owner is None


async def merge_of(session: AsyncSession, snapshot: Snapshot, disk: Disk) -> Merge | None:
    """The merge that removes `snapshot`'s volume of `disk`; None when it is done."""
    volumes = await snapshot_volumes(session, disk.id)
    at = next((i for i, v in enumerate(volumes) if v.snapshot_id == snapshot.id), None)
    if at is None:
        return None
    chain = [v.image_path for v in volumes] + [disk.image_path]
    owner = volumes[at + 1] if at + 1 < len(volumes) else None
    child = chain[at + 2] if at + 2 < len(chain) else None
    return Merge(disk=disk, volume=volumes[at], top=chain[at + 1], child=child, top_owner=owner)
