"""Shared storage domain jobs: lay out or import, attach, detach (one host carries them out).

Each job ends its domain settled: done, or back where it was (a failed add or import
leaves no domain behind), so nothing stays `locked`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import (
    Cluster,
    DataCenter,
    Disk,
    Host,
    Snapshot,
    StorageDomain,
    Vm,
)
from overt.engine.jobs.context import JobContext, Unit
from overt.engine.jobs.errors import JobFailed, RetryLater
from overt.engine.jobs.kinds import (
    AttachStorageDomain,
    CreateStorageDomain,
    DetachStorageDomain,
    JobSpec,
)
from overt.engine.model.status import (
    DiskStatus,
    HostStatus,
    LogSeverity,
    StorageDomainStatus,
    StorageType,
)
from overt.engine.model.volume_labels import (
    MEMORY_CONTENT,
    TOP_OF_CHAIN,
    LunVolume,
    area_problem,
    lun_description,
    memory_disk_names,
    read_description,
    volume_lines,
)
from overt.engine.queries import lookup
from overt.engine.queries.shared_storage import (
    extent_of,
    extent_path,
    lun_of,
    recount_extents,
    split_volume_path,
    volume_path,
)
from overt.engine.queries.snapshot_chains import volume_parents
from overt.protocol.ovirt_metadata import parse_metadata, render_metadata
from overt.protocol.storage import (
    DOMAIN_AREA,
    DomainInfo,
    DomainList,
    ExtentFormat,
    ExtentRef,
    LunContents,
    LunMetadataWrite,
    LunRead,
    NfsExportRef,
    Removed,
    SharedVolumeCreate,
    SharedVolumeDelete,
    SharedVolumeInfo,
    StorageDomainCreate,
    StorageDomainScan,
    StorageDomainUpdate,
    StoredVolume,
)
from overt.protocol.vm import DiskFormat

NO_POOL = ""


def export_of(domain: StorageDomain) -> NfsExportRef:
    return NfsExportRef(server=domain.address or "", export=domain.path)


async def storage_host(ctx: JobContext, domain: StorageDomain) -> Host:
    """The host of a local domain, which alone reaches its directory."""
    if domain.host_id is None:
        raise JobFailed(f"storage domain {domain.name} has no host to act through")
    async with ctx.transaction() as session:
        host = await lookup.get(session, Host, domain.host_id)
    if host.status != HostStatus.UP:
        raise RetryLater(f"host {host.name} of storage domain {domain.name} is {host.status}")
    return host


async def acting_host(ctx: JobContext, domain: StorageDomain) -> Host:
    """A host that is up to act on the domain: its own host first, else any host up in
    its data center (any of them reaches shared storage)."""
    async with ctx.transaction() as session:
        candidates: list[Host] = []
        if domain.host_id is not None:
            own = await session.get(Host, domain.host_id)
            if own is not None:
                candidates.append(own)
        if domain.data_center_id is not None:
            candidates += (await session.execute(
                select(Host).join(Cluster, Cluster.id == Host.cluster_id)
                .where(Cluster.data_center_id == domain.data_center_id)
                .order_by(Host.name))).scalars().all()
    for host in candidates:
        if host.status == HostStatus.UP and host.host_uuid is not None:
            return host
    raise RetryLater(f"no host is up to reach storage domain {domain.name}")


def domain_metadata(domain: StorageDomain) -> dict[str, str]:
    """oVirt's file domain metadata (format 5)."""
    return {
        "ALIGNMENT": "1048576", "BLOCK_SIZE": "512", "CLASS": domain.type.capitalize(),
        "DESCRIPTION": domain.name, "IOOPTIMEOUTSEC": "10", "LEASERETRIES": "3",
        "LEASETIMESEC": "60", "LOCKPOLICY": "", "LOCKRENEWALINTERVALSEC": "5",
        "POOL_UUID": NO_POOL, "REMOTE_PATH": f"{domain.address}:{domain.path}",
        "ROLE": "Regular", "TYPE": "NFS", "VERSION": "5",
    }


async def create_domain(ctx: JobContext, spec: CreateStorageDomain) -> dict[str, Any]:
    sd_id = spec.storage_domain_id
    async with ctx.transaction() as session:
        domain = await lookup.get(session, StorageDomain, sd_id)
    host = await acting_host(ctx, domain)
    if spec.import_domain:
        return await _import(ctx, domain, host)
    if domain.storage_type == StorageType.ISCSI.value:
        return await _create_on_lun(ctx, domain, host)
    async with ctx.step(f"Laying out storage domain {domain.name} on "
                        f"{domain.address}:{domain.path}", host_id=host.id):
        info = await ctx.nodes.call(
            host, StorageDomainCreate(storage=export_of(domain), domain_id=sd_id,
                                      metadata=domain_metadata(domain)),
            DomainInfo, key=ctx.key("create"), timeout_s=120)
    async with ctx.transaction() as session:
        domain = await lookup.get(session, StorageDomain, sd_id)
        _settle(domain, info, StorageDomainStatus.UNATTACHED)
        audit.record(session, f"Storage Domain {domain.name} was added on "
                     f"{domain.address}:{domain.path}", code=audit.STORAGE_DOMAIN_ADDED,
                     storage_domain_id=sd_id, host_id=host.id, job_id=ctx.job.id,
                     user_id=ctx.job.owner_id)
    return {"total": info.total_bytes, "free": info.free_bytes}


async def _create_on_lun(ctx: JobContext, domain: StorageDomain, host: Host
                         ) -> dict[str, Any]:
    lun = lun_of(domain, ctx.services.secret_box())
    async with ctx.step(f"Writing the metadata of storage domain {domain.name} on LUN "
                        f"{domain.path} of {domain.address}", host_id=host.id):
        found = await ctx.nodes.call(host, LunRead(lun=lun), LunContents,
                                     key=ctx.key("read"), timeout_s=120)
        owner = parse_metadata(found.metadata).get("SDUUID")
        if owner and owner != str(domain.id):
            raise JobFailed(f"LUN {domain.path} of {domain.address} already holds storage "
                            f"domain {owner}")
        await ctx.nodes.call(host, LunMetadataWrite(lun=lun, metadata=await _lun_metadata(
            ctx, domain, pool=NO_POOL), clear_leases=True), LunContents, key=ctx.key("write"),
            timeout_s=120)
    async with ctx.transaction() as session:
        row = await lookup.get(session, StorageDomain, domain.id)
        row.status = StorageDomainStatus.UNATTACHED
        row.used_bytes, row.available_bytes = 0, found.size_bytes - DOMAIN_AREA
        audit.record(session, f"Storage Domain {row.name} was added on LUN {row.path} of "
                     f"{row.address}", code=audit.STORAGE_DOMAIN_ADDED, storage_domain_id=row.id,
                     host_id=host.id, job_id=ctx.job.id, user_id=ctx.job.owner_id)
    return {"lun_size": found.size_bytes}


async def _lun_metadata(ctx: JobContext, domain: StorageDomain, *, pool: str,
                        without: Collection[uuid.UUID] = ()) -> str:
    """The whole metadata area of an iSCSI domain, from the engine's records: the domain's
    keys and one line per volume (image, extent, format, size, alias, the volume under it,
    LEAF or INTERNAL): the disks' chains as the database records them."""
    async with ctx.transaction() as session:
        disks = (await session.execute(select(Disk).where(
            Disk.storage_domain_id == domain.id).order_by(Disk.image_path))).scalars().all()
        chains = {disk.id: await volume_parents(session, disk) for disk in disks}
        memory = (await session.execute(select(Snapshot, Vm).join(
            Vm, Vm.id == Snapshot.vm_id).where(Snapshot.memory_domain_id == domain.id)
            .order_by(Snapshot.created_at))).all()
        kept = (await lookup.get(session, StorageDomain, domain.id)).kept_volumes or {}
    values = {**domain_metadata(domain), "TYPE": "ISCSI", "POOL_UUID": pool,
              "REMOTE_PATH": f"{domain.address}/{domain.path}",
              "SDUUID": str(domain.storage_uuid or domain.id), **kept}
    for disk in disks:
        if disk.id in without or disk.content_type in MEMORY_CONTENT.values():
            continue
        alias = lun_description(disk.name, disk.description,
                                illegal=disk.status == DiskStatus.ILLEGAL)
        for path, under, fmt in chains[disk.id]:
            extent = extent_of(path)
            if extent is None:
                continue
            image_id, volume_id = split_volume_path(path)
            parent = split_volume_path(under)[1] if under is not None else TOP_OF_CHAIN
            values[f"VOL_{volume_id}"] = ",".join([
                str(image_id), str(extent[0]), str(extent[1]), "COW" if fmt == "cow" else "RAW",
                str(disk.provisioned_size), alias, str(parent),
                "LEAF" if path == disk.image_path else "INTERNAL"])
    for disk in disks:  # memory volumes an import adopted as disks (no snapshot)
        extent = extent_of(disk.image_path)
        if disk.id in without or disk.content_type not in MEMORY_CONTENT.values() \
                or extent is None:
            continue
        image_id, volume_id = split_volume_path(disk.image_path)
        values[f"VOL_{volume_id}"] = ",".join([
            str(image_id), str(extent[0]), str(extent[1]), "RAW", str(extent[1]),
            lun_description(disk.name, disk.description), TOP_OF_CHAIN, "LEAF",
            _DISK_TYPES[disk.content_type], ""])
    for snapshot, vm in memory:
        values.update(_memory_lines(snapshot, vm))
    return render_metadata(values, checksum=True, eof=False).decode()


def _memory_lines(snapshot: Snapshot, vm: Vm) -> dict[str, str]:
    """A snapshot's memory volumes in the metadata area: raw extents alone in their
    images, each line ending with vdsm's DISKTYPE (`MEMD` the guest's state, `MEMM` the
    domain's XML) and the snapshot's id, so whoever reads the area back knows what holds
    those extents and for which snapshot (a disk volume's line has no such fields). Their
    alias and description are the memory disks' the API shows (`memory_disk_names`)."""
    lines = {}
    for path, disk_type in ((snapshot.memory_volume, "MEMD"),
                            (snapshot.memory_metadata_volume, "MEMM")):
        extent = extent_of(path) if path else None
        if path is None or extent is None:
            continue
        image_id, volume_id = split_volume_path(path)
        alias = lun_description(*memory_disk_names(vm.name, vm.id, snapshot.description,
                                                   disk_type))
        lines[f"VOL_{volume_id}"] = ",".join([
            str(image_id), str(extent[0]), str(extent[1]), "RAW", str(extent[1]), alias,
            TOP_OF_CHAIN, "LEAF", disk_type, str(snapshot.id)])
    return lines


async def _import(ctx: JobContext, domain: StorageDomain, host: Host) -> dict[str, Any]:
    if domain.storage_type == StorageType.ISCSI.value:
        return await _import_lun(ctx, domain, host)
    async with ctx.step(f"Reading the storage domain on {domain.address}:{domain.path}",
                        host_id=host.id):
        found = await ctx.nodes.call(host, StorageDomainScan(storage=export_of(domain)),
                                     DomainList, key=ctx.key("scan"), timeout_s=300)
    if len(found.domains) != 1:
        raise JobFailed(f"{domain.address}:{domain.path} holds {len(found.domains)} storage "
                        "domains; an import needs exactly one")
    contents = found.domains[0]
    imported = 0
    async with ctx.transaction() as session:
        row = await lookup.get(session, StorageDomain, domain.id)
        taken = (await session.execute(select(StorageDomain.name).where(
            StorageDomain.storage_uuid == contents.domain.id))).scalars().first()
        if taken is not None:
            raise JobFailed(f"the domain on {domain.address}:{domain.path} is already storage "
                            f"domain {taken} of this engine")
        row.storage_uuid = contents.domain.id
        _settle(row, contents.domain, StorageDomainStatus.UNATTACHED)
        for volume in contents.volumes:
            if is_image_leaf(volume, contents.volumes) and await _adopt(session, row, volume):
                imported += 1
        audit.record(session, f"Storage Domain {row.name} was imported from "
                     f"{row.address}:{row.path} with {imported} disk(s)",
                     code=audit.STORAGE_DOMAIN_ADDED, storage_domain_id=row.id, host_id=host.id,
                     job_id=ctx.job.id, user_id=ctx.job.owner_id)
    return {"disks": imported}


def is_image_leaf(volume: StoredVolume, volumes: list[StoredVolume]) -> bool:
    """Whether `volume` is the leaf of a whole image: not under a snapshot's volume, and
    its chain (its snapshots' volumes, in the same image) reaches the image's base."""
    if volume.metadata.get("VOLTYPE") == "INTERNAL":
        return False
    parents = {v.volume_id: v.metadata.get("PUUID", TOP_OF_CHAIN) for v in volumes
               if v.image_id == volume.image_id}
    parent, seen = volume.metadata.get("PUUID", TOP_OF_CHAIN), {volume.volume_id}
    while parent != TOP_OF_CHAIN:
        try:
            parent_id = uuid.UUID(parent)
        except ValueError:
            return False
        if parent_id in seen or parent_id not in parents:
            return False  # a thin volume over another image (a template's), or a loop
        seen.add(parent_id)
        parent = parents[parent_id]
    return True


_DISK_TYPES = {content: disk_type for disk_type, content in MEMORY_CONTENT.items()}


async def _adopt(session: Any, domain: StorageDomain, volume: StoredVolume) -> bool:
    """A disk row for an image's leaf volume found on storage (`is_image_leaf`) whose
    metadata says it is legal; the disk keeps its image id, as in oVirt. The volumes
    under the leaf stay its backing chain on storage (the snapshots themselves, VM
    configuration, are not on the domain)."""
    meta = volume.metadata
    if meta.get("LEGALITY") != "LEGAL":
        return False
    if await session.get(Disk, volume.image_id) is not None:
        return False
    described = read_description(meta.get("DESCRIPTION"))
    alias = described.get("DiskAlias")
    # A snapshot's memory volume (vdsm's DISKTYPE MEMD/MEMM): the import brings no
    # snapshot, so it becomes a disk of oVirt's memory content type, which no VM can
    # attach and its owner may remove, rather than a data disk or a forgotten volume.
    content_type = MEMORY_CONTENT.get(meta.get("DISKTYPE", ""), "data")
    if alias is None and content_type != "data":  # written before the names were kept
        alias = f"{meta.get('DESCRIPTION') or 'memory'} {str(volume.image_id)[:8]}"
    size = int(meta.get("CAP") or volume.virtual_size)
    session.add(Disk(
        id=volume.image_id, name=str(alias or f"disk-{str(volume.image_id)[:8]}")[:255],
        description=described.get("DiskDescription", ""), storage_domain_id=domain.id,
        content_type=content_type, provisioned_size=size,
        # a memory volume shows its whole size, as the engine that made it showed it
        actual_size=volume.actual_size if content_type == "data" else size,
        format="cow" if volume.format is DiskFormat.QCOW2 else "raw",
        sparse=meta.get("TYPE", "SPARSE") == "SPARSE", status=DiskStatus.OK,
        image_path=volume_path(domain, volume.image_id, volume.volume_id)))
    await session.flush()
    return True


async def _import_lun(ctx: JobContext, domain: StorageDomain, host: Host) -> dict[str, Any]:
    """Take over the iSCSI domain on the row's LUN: its metadata area is read again (the
    API read it to check the request; this is the truth now), the domain keeps its id,
    every single-volume image (a disk without snapshots, legal) and every memory volume
    becomes a disk with its extent, and the other volumes (snapshot chains, thin volumes
    over a template, illegal volumes) are kept: their lines stay in the area and their
    extents taken. One transaction records it all, so a retry (or a successor after a
    crash) reads and adopts again from the start."""
    lun = lun_of(domain, ctx.services.secret_box())
    async with ctx.step(f"Reading the metadata area of LUN {domain.path} of "
                        f"{domain.address}", host_id=host.id):
        found = await ctx.nodes.call(host, LunRead(lun=lun), LunContents,
                                     key=ctx.key("read"), timeout_s=120)
    area = parse_metadata(found.metadata)
    problem = area_problem(area, lun_size=found.size_bytes, first_extent=DOMAIN_AREA)
    if problem is None and area["SDUUID"] != str(domain.storage_uuid or domain.id):
        problem = (f"it now holds storage domain {area['SDUUID']}, not "
                   f"{domain.storage_uuid or domain.id}")
    if problem is not None:
        raise JobFailed(f"LUN {domain.path} of {domain.address} cannot be imported: {problem}")
    volumes = volume_lines(area)
    images: dict[uuid.UUID, list[LunVolume]] = {}
    for volume in volumes:
        images.setdefault(volume.image_id, []).append(volume)
    adopted: list[str] = []
    async with ctx.transaction() as session:
        row = await lookup.get(session, StorageDomain, domain.id, for_update=True)
        if row.status != StorageDomainStatus.LOCKED:
            return {"disks": 0}  # settled by an earlier try
        kept: dict[str, str] = {}
        for volume in volumes:
            if await _adopt_extent(session, row, volume, images[volume.image_id]):
                adopted.append(volume.alias or str(volume.image_id))
            else:
                kept[volume.key] = volume.line
        row.kept_volumes = kept or None
        row.used_bytes, row.available_bytes = 0, found.size_bytes - DOMAIN_AREA
        await recount_extents(session, row.id)
        row.status = StorageDomainStatus.UNATTACHED
        audit.record(session, f"Storage Domain {row.name} was imported from LUN {row.path} "
                     f"of {row.address} with {len(adopted)} disk(s)" + (
                         f"; {len(kept)} volume(s) of snapshot chains, thin disks or illegal "
                         "disks stay on the LUN, not adopted" if kept else ""),
                     code=audit.STORAGE_DOMAIN_ADDED, storage_domain_id=row.id,
                     host_id=host.id, job_id=ctx.job.id, user_id=ctx.job.owner_id)
    return {"disks": len(adopted), "kept_volumes": len(kept)}


async def _adopt_extent(session: AsyncSession, domain: StorageDomain, volume: LunVolume,
                        image: list[LunVolume]) -> bool:
    """A disk row for a volume of an imported iSCSI domain when it is a whole image on
    its own (no snapshot under it, no template's volume under it: the engine gives
    libvirt a disk's chain from its snapshots, which an import does not bring) and legal,
    or a memory volume; its image id is the disk's, as on NFS."""
    whole = volume.leaf and volume.parent == TOP_OF_CHAIN and len(image) == 1
    if not whole or not volume.legal or await session.get(Disk, volume.image_id) is not None:
        return False
    content_type = MEMORY_CONTENT.get(volume.disk_type, "data")
    if content_type == "data" and volume.disk_type != "DATA":
        return False
    memory = content_type != "data"
    fmt = "cow" if volume.format == "COW" else "raw"
    session.add(Disk(
        id=volume.image_id, name=(volume.alias or f"disk-{str(volume.image_id)[:8]}")[:255],
        description=volume.description, storage_domain_id=domain.id,
        content_type=content_type,
        provisioned_size=volume.size if memory else volume.virtual_size,
        actual_size=volume.size, format=fmt, sparse=fmt == "cow", status=DiskStatus.OK,
        image_path=extent_path(domain, volume.offset, volume.size, volume.image_id,
                               volume.volume_id)))
    await session.flush()
    return True


def _settle(domain: StorageDomain, info: DomainInfo, status: StorageDomainStatus) -> None:
    domain.status = status
    domain.available_bytes = info.free_bytes
    domain.used_bytes = max(0, info.total_bytes - info.free_bytes)


async def _create_failed(session: AsyncSession, ctx: JobContext, spec: CreateStorageDomain,
                         message: str) -> None:
    """A domain that could not be laid out or read is not kept half-known."""
    domain = await session.get(StorageDomain, spec.storage_domain_id)
    if domain is None or domain.status != StorageDomainStatus.LOCKED:
        return
    for disk in (await session.execute(select(Disk).where(
            Disk.storage_domain_id == domain.id))).scalars().all():
        await session.delete(disk)
    await session.flush()
    audit.record(session, f"Adding storage domain {domain.name} failed: {message}",
                 severity=LogSeverity.ERROR, job_id=ctx.job.id, user_id=ctx.job.owner_id)
    await session.delete(domain)


async def attach_domain(ctx: JobContext, spec: AttachStorageDomain) -> dict[str, Any]:
    sd_id = spec.storage_domain_id
    dc_id = spec.data_center_id
    async with ctx.transaction() as session:
        domain = await lookup.get(session, StorageDomain, sd_id)
        dc = await lookup.get(session, DataCenter, dc_id)
    host = await acting_host(ctx, domain)
    info = await _update(ctx, domain, host, {"POOL_UUID": str(dc_id)},
                         f"Attaching storage domain {domain.name} to {dc.name}")
    async with ctx.transaction() as session:
        domain = await lookup.get(session, StorageDomain, sd_id)
        _settle(domain, info, StorageDomainStatus.ACTIVE)
        audit.record(session, f"Storage Domain {domain.name} was attached to Data Center "
                     f"{dc.name} and is active", code=audit.STORAGE_DOMAIN_ACTIVATED,
                     storage_domain_id=sd_id, data_center_id=dc_id, host_id=host.id,
                     job_id=ctx.job.id, user_id=ctx.job.owner_id)
    return {}


async def _attach_failed(session: AsyncSession, ctx: JobContext, spec: AttachStorageDomain,
                         message: str) -> None:
    await _unlock(session, ctx, spec.storage_domain_id, StorageDomainStatus.UNATTACHED,
                  message, forget_dc=True)


async def detach_domain(ctx: JobContext, spec: DetachStorageDomain) -> dict[str, Any]:
    sd_id = spec.storage_domain_id
    async with ctx.transaction() as session:
        domain = await lookup.get(session, StorageDomain, sd_id)
    host = await acting_host(ctx, domain)
    info = await _update(ctx, domain, host, {"POOL_UUID": NO_POOL},
                         f"Detaching storage domain {domain.name}")
    async with ctx.transaction() as session:
        domain = await lookup.get(session, StorageDomain, sd_id)
        dc_id = domain.data_center_id
        domain.data_center_id = None
        _settle(domain, info, StorageDomainStatus.UNATTACHED)
        audit.record(session, f"Storage Domain {domain.name} was detached",
                     storage_domain_id=sd_id, data_center_id=dc_id, job_id=ctx.job.id,
                     user_id=ctx.job.owner_id)
    return {}


async def _detach_failed(session: AsyncSession, ctx: JobContext, spec: DetachStorageDomain,
                         message: str) -> None:
    await _unlock(session, ctx, spec.storage_domain_id, StorageDomainStatus.MAINTENANCE,
                  message, forget_dc=False)


async def _update(ctx: JobContext, domain: StorageDomain, host: Host, changes: dict[str, str],
                  what: str) -> DomainInfo:
    stamp = str(int(time.time()))
    if domain.storage_type == StorageType.ISCSI.value:
        async with ctx.step(what, host_id=host.id):
            text = await _lun_metadata(ctx, domain, pool=changes["POOL_UUID"])
            await ctx.nodes.call(host, LunMetadataWrite(
                lun=lun_of(domain, ctx.services.secret_box()), metadata=text),
                LunContents, key=ctx.key("update"), timeout_s=120)
        return DomainInfo(id=domain.id, metadata=parse_metadata(text),
                          total_bytes=domain.used_bytes + domain.available_bytes,
                          free_bytes=domain.available_bytes)
    async with ctx.step(what, host_id=host.id):
        return await ctx.nodes.call(
            host, StorageDomainUpdate(storage=export_of(domain),
                                      domain_id=domain.storage_uuid or domain.id,
                                      changes={**changes, "LAST_CHANGE": stamp}),
            DomainInfo, key=ctx.key("update"), timeout_s=120)


async def _unlock(session: AsyncSession, ctx: JobContext, sd_id: uuid.UUID,
                  status: StorageDomainStatus, message: str, *, forget_dc: bool) -> None:
    domain = await session.get(StorageDomain, sd_id)
    if domain is None or domain.status != StorageDomainStatus.LOCKED:
        return
    domain.status = status
    if forget_dc:
        domain.data_center_id = None
    audit.record(session, f"{ctx.job.description} failed: {message}",
                 severity=LogSeverity.ERROR, storage_domain_id=domain.id,
                 job_id=ctx.job.id, user_id=ctx.job.owner_id)


async def create_volume(ctx: JobContext, domain: StorageDomain, disk: Disk, *,
                        backing: Disk | None = None) -> SharedVolumeInfo:
    """A disk's volume on a shared domain, named by the engine (image = the disk's id);
    with `backing`, a thin layer over that disk's volume (on the same NFS domain)."""
    host = await acting_host(ctx, domain)
    image_id, volume_id = split_volume_path(disk.image_path)
    extent = extent_of(disk.image_path)
    if backing is not None and backing.storage_domain_id != disk.storage_domain_id:
        raise JobFailed(f"disk {disk.name}: a thin disk lies on its template disk's domain")
    backing_ids = split_volume_path(backing.image_path) if backing is not None else (None, None)
    if extent is not None:
        under = None
        if backing is not None:
            backing_extent = extent_of(backing.image_path)
            if backing_extent is None or disk.format != "cow":
                raise JobFailed(f"disk {disk.name}: a thin disk on iSCSI is a qcow2 layer "
                                "over its template disk's extent")
            under = ExtentRef(offset=backing_extent[0], size=backing_extent[1],
                              format=DiskFormat.QCOW2 if backing.format == "cow"
                              else DiskFormat.RAW)
        async with ctx.step(f"Creating disk {disk.name} on storage domain {domain.name}",
                            host_id=host.id):
            made = await ctx.nodes.call(host, ExtentFormat(
                lun=lun_of(domain, ctx.services.secret_box()), offset=extent[0], size=extent[1],
                format=DiskFormat.QCOW2 if disk.format == "cow" else DiskFormat.RAW,
                virtual_size=disk.provisioned_size, backing=under), SharedVolumeInfo,
                key=ctx.key("create"), timeout_s=600)
            await write_lun_metadata(ctx, domain, host, key="create-md")
        return made
    description = json.dumps({"DiskAlias": disk.name, "DiskDescription": disk.description})
    async with ctx.step(f"Creating disk {disk.name} on storage domain {domain.name}",
                        host_id=host.id):
        return await ctx.nodes.call(
            host, SharedVolumeCreate(
                storage=export_of(domain), domain_id=domain.storage_uuid or domain.id,
                image_id=image_id, volume_id=volume_id,
                format=DiskFormat.QCOW2 if disk.format == "cow" else DiskFormat.RAW,
                size_bytes=disk.provisioned_size, sparse=disk.sparse,
                metadata={"DESCRIPTION": description, "CTIME": ctx.ctime()},
                backing_image_id=backing_ids[0], backing_volume_id=backing_ids[1],
                backing_format=DiskFormat.QCOW2 if backing is None or backing.format == "cow"
                else DiskFormat.RAW),
            SharedVolumeInfo, key=ctx.key("create"), timeout_s=600)


async def write_lun_metadata(ctx: JobContext, domain: StorageDomain, host: Host, *, key: str,
                              without: Collection[uuid.UUID] = ()) -> None:
    async with ctx.transaction() as session:
        fresh = await lookup.get(session, StorageDomain, domain.id)
    pool = str(fresh.data_center_id) if fresh.data_center_id else NO_POOL
    text = await _lun_metadata(ctx, fresh, pool=pool, without=without)
    await ctx.nodes.call(host, LunMetadataWrite(
        lun=lun_of(domain, ctx.services.secret_box()), metadata=text), LunContents,
        key=ctx.key(key), timeout_s=120)


async def remove_volume(ctx: JobContext, domain: StorageDomain, disk: Disk, *,
                        key: str = "delete", going: Collection[uuid.UUID] = ()) -> None:
    """Remove a disk's volume; `going`: other disks removed with it (a VM's), which the
    metadata area of an iSCSI domain no longer lists either."""
    host = await acting_host(ctx, domain)
    image_id, volume_id = split_volume_path(disk.image_path)
    if extent_of(disk.image_path) is not None:
        async with ctx.step(f"Removing disk {disk.name}", host_id=host.id):
            await write_lun_metadata(ctx, domain, host, key=f"{key}-md",
                                     without={disk.id, *going})
        return  # the extent is released with the disk's row (overt.engine.jobs.handlers.disks)
    async with ctx.step(f"Removing disk {disk.name}", host_id=host.id):
        await ctx.nodes.call(
            host, SharedVolumeDelete(storage=export_of(domain),
                                     domain_id=domain.storage_uuid or domain.id,
                                     image_id=image_id, volume_id=volume_id),
            Removed, key=ctx.key(key))


UNITS: dict[type[JobSpec], Unit[Any]] = {
    CreateStorageDomain: Unit(create_domain, compensate=_create_failed),
    AttachStorageDomain: Unit(attach_domain, compensate=_attach_failed),
    DetachStorageDomain: Unit(detach_domain, compensate=_detach_failed),
}
