"""Where the volumes of shared storage domains lie, and the engine's allocation of iSCSI
extents: read by the services that allocate disks and the jobs that create and remove
them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import (
    Disk,
    ExtentReservation,
    Host,
    Snapshot,
    SnapshotVolume,
    StorageDomain,
)
from overt.engine.model.errors import Conflict
from overt.engine.model.status import StorageType
from overt.engine.queries import lookup
from overt.engine.secrets import SecretBox
from overt.protocol.storage import DOMAIN_AREA, IscsiLunRef
from overt.protocol.vm import ChapAuth

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


def lun_of(domain: StorageDomain, box: SecretBox | None) -> IscsiLunRef:
    """The domain's LUN as a node reaches it, with its CHAP credentials opened with `box`,
    the engine's (from the job's services, the API's or the monitor's)."""
    target, _, lun = domain.path.rpartition("/")
    return IscsiLunRef(portal=domain.address or "", target=target, lun=int(lun),
                       chap=chap_of(domain, box))


def lun_ref(disk: Disk, box: SecretBox | None) -> IscsiLunRef:
    """A direct LUN disk's LUN, with its CHAP credentials opened with `box`."""
    target, _, number = (disk.lun_path or "").rpartition("/")
    return IscsiLunRef(portal=disk.lun_portal or "", target=target, lun=int(number or 0),
                       chap=lun_disk_chap(disk, box))


def _opened_chap(username: str | None, sealed: str | None, box: SecretBox | None,
                 whose: str) -> ChapAuth | None:
    """CHAP credentials with the password opened with the engine's box (it goes to the
    node in the command only, never to a log); None without a user. Code given no box
    (None) reaches nothing with CHAP."""
    if not username:
        return None
    if box is None:
        raise RuntimeError(f"the CHAP password of {whose} is opened without the engine's "
                           "secret box")
    return ChapAuth(username=username, password=box.open(sealed or "").reveal())


def lun_disk_chap(disk: Disk, box: SecretBox | None) -> ChapAuth | None:
    """The CHAP credentials of a direct LUN disk's target (None: it has none)."""
    return _opened_chap(disk.lun_chap_username, disk.lun_chap_password_sealed, box,
                        f"direct LUN disk {disk.name}")


def chap_of(domain: StorageDomain, box: SecretBox | None) -> ChapAuth | None:
    """The CHAP credentials of an iSCSI domain's connection."""
    return _opened_chap(domain.chap_username, domain.chap_password_sealed, box,
                        f"storage domain {domain.name}")


def extent_size(fmt: str, provisioned: int) -> int:
    """Room for a volume: the disk itself, plus a qcow2's metadata (tables and headers)."""
    size = provisioned if fmt != "cow" else provisioned + provisioned // 4096 + 4 * MIB
    return -(-size // MIB) * MIB


async def new_volume_path(session: AsyncSession, domain: StorageDomain, disk_id: uuid.UUID,
                          fmt: str, provisioned: int) -> str:
    """Allocate a new disk's volume: ids on NFS; on iSCSI also an extent of the LUN."""
    if domain.storage_type == StorageType.NFS.value:
        return volume_path(domain, disk_id, uuid.uuid4())
    return await allocate_extent(session, domain, disk_id, fmt, provisioned)


async def taken_extents(session: AsyncSession, domain_id: uuid.UUID) -> set[str]:
    """The volume paths holding extents of an iSCSI domain: its disks' volumes, their
    snapshots' volumes and memory volumes, and the volumes jobs are about to make."""
    disks = (await session.execute(select(Disk.image_path).where(
        Disk.storage_domain_id == domain_id))).scalars().all()
    frozen = (await session.execute(select(SnapshotVolume.image_path).join(
        Disk, Disk.id == SnapshotVolume.disk_id).where(
        Disk.storage_domain_id == domain_id))).scalars().all()
    reserved = (await session.execute(select(ExtentReservation.image_path).where(
        ExtentReservation.storage_domain_id == domain_id))).scalars().all()
    memory = [path for row in await session.execute(
        select(Snapshot.memory_volume, Snapshot.memory_metadata_volume).where(
            Snapshot.memory_domain_id == domain_id)) for path in row if path]
    return {path for path in (*disks, *frozen, *reserved, *memory,
                              *await kept_extents(session, domain_id))
            if extent_of(path) is not None}


async def kept_extents(session: AsyncSession, domain_id: uuid.UUID) -> list[str]:
    """The volumes an import found on the LUN and did not adopt (`kept_volumes`: lines
    `IMG,OFFSET,SIZE,...`), as volume paths: taken, so no new volume is put over them."""
    domain = await session.get(StorageDomain, domain_id)
    if domain is None or not domain.kept_volumes:
        return []
    paths = []
    for key, line in domain.kept_volumes.items():
        image, offset, size = line.split(",")[:3]
        paths.append(extent_path(domain, int(offset), int(size), uuid.UUID(image),
                                 uuid.UUID(key.removeprefix("VOL_"))))
    return paths


async def allocate_extent(session: AsyncSession, domain: StorageDomain, image_id: uuid.UUID,
                          fmt: str, provisioned: int, *, reserve: bool = False,
                          what: str = "Disk") -> str:
    """The first free extent of the LUN large enough for a volume of `image_id` (the
    domain row is locked, so two volumes never share one). With `reserve`, the extent is
    held until a chain records it (`claim_extent`) or its job gives it up."""
    locked = await lookup.get(session, StorageDomain, domain.id, for_update=True)
    size = extent_size(fmt, provisioned)
    taken = sorted(extent for path in await taken_extents(session, locked.id)
                   if (extent := extent_of(path)) is not None)
    end = DOMAIN_AREA + locked.used_bytes + locked.available_bytes
    offset = DOMAIN_AREA
    for start, length in taken:
        if offset + size <= start:
            break
        offset = max(offset, start + length)
    if offset + size > end:
        raise Conflict(f"Cannot add {what}: storage domain {locked.name} has no free extent of "
                       f"{size} bytes (free space: {locked.available_bytes} bytes).")
    path = extent_path(locked, offset, size, image_id, uuid.uuid4())
    if reserve:
        session.add(ExtentReservation(image_path=path, storage_domain_id=locked.id))
    locked.used_bytes += size
    locked.available_bytes -= size
    return path


async def recount_extents(session: AsyncSession, domain_id: uuid.UUID) -> None:
    """The domain's used and free space from the extents its volumes hold now: safe to
    repeat, so a retried removal frees an extent once."""
    await session.flush()
    domain = await lookup.get(session, StorageDomain, domain_id, for_update=True)
    if domain.storage_type != StorageType.ISCSI.value:
        return
    total = domain.used_bytes + domain.available_bytes
    used = sum(extent[1] for path in await taken_extents(session, domain_id)
               if (extent := extent_of(path)) is not None)
    domain.used_bytes, domain.available_bytes = used, max(0, total - used)


async def claim_extent(session: AsyncSession, image_path: str) -> None:
    """A reserved volume is now in a disk's chain (recorded in the same transaction)."""
    await session.execute(delete(ExtentReservation).where(
        ExtentReservation.image_path == image_path))


async def release_reservations(session: AsyncSession, paths: list[str]) -> None:
    """A job that failed gives up the extents it reserved and did not record."""
    domains = set((await session.execute(select(ExtentReservation.storage_domain_id).where(
        ExtentReservation.image_path.in_(paths)))).scalars())
    await session.execute(delete(ExtentReservation).where(
        ExtentReservation.image_path.in_(paths)))
    for domain_id in domains:
        await recount_extents(session, domain_id)


async def lun_holders(session: AsyncSession, portal: str, path: str
                      ) -> tuple[str | None, str | None]:
    """Who holds the LUN `path` of `portal`: the name of the iSCSI storage domain on it and
    the name of the direct LUN disk that is it (None for each nobody is). A LUN is given to
    one of them only."""
    domain = (await session.execute(select(StorageDomain.name).where(
        StorageDomain.storage_type == StorageType.ISCSI.value, StorageDomain.address == portal,
        StorageDomain.path == path))).scalars().first()
    disk = (await session.execute(select(Disk.name).where(
        Disk.lun_portal == portal, Disk.lun_path == path))).scalars().first()
    return domain, disk


async def listed_luns(session: AsyncSession, domains: Sequence[StorageDomain]
                      ) -> dict[tuple[str, str], dict[str, Any]]:
    """The LUNs of `domains` (their iSCSI ones) as the last LUN list of a host logged in to
    their target saw them (`hosts.iscsi_logins`), by (portal, `target/LUN`): what the
    domain's `logical_unit` shows beyond what the engine records (the SCSI id, serial,
    vendor, product, size). Empty, with no query, when no domain is iSCSI."""
    wanted = {(d.address or "", d.path) for d in domains
              if d.storage_type == StorageType.ISCSI.value}
    if not wanted:
        return {}
    found: dict[tuple[str, str], dict[str, Any]] = {}
    logins = (await session.execute(select(Host.iscsi_logins).where(
        Host.iscsi_logins.is_not(None)))).scalars()
    for entries in logins:
        for entry in entries or []:
            portal = f"{entry['address']}:{entry['port']}"
            for lun in entry.get("luns", []):
                key = (portal, f"{entry['target']}/{lun['lun']}")
                if key in wanted:
                    found.setdefault(key, lun)
    return found
