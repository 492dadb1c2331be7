"""The volume work of snapshot jobs, one strategy per kind of storage domain: a local
domain's files through its own host (volume.*), an NFS domain's volumes with their
`.meta` through any host of its data center (storage.volume_*), an iSCSI domain's
volumes as extents of its LUN (storage.extent_*) whose chain the domain's metadata area
lists. The jobs (`snapshots`, `snapshot_restore`, `snapshot_preview`) call the same steps
whatever the domain; `volumes_of` picks the strategy.

Every call is safe to repeat: the job machinery retries a step whose reply was lost,
and an engine that restarts runs the job again from its recorded progress.
"""

from __future__ import annotations

import json
from typing import ClassVar

from overt.engine.db.tables import Disk, Host, StorageDomain
from overt.engine.jobs.context import JobContext
from overt.engine.jobs.errors import JobFailed
from overt.engine.jobs.handlers.storage_domains import (
    acting_host,
    export_of,
    storage_host,
    write_lun_metadata,
)
from overt.engine.model.status import StorageType
from overt.engine.nodes import NodeCommandFailed
from overt.engine.queries.shared_storage import (
    extent_of,
    lun_of,
    recount_extents,
    split_volume_path,
)
from overt.engine.queries.snapshot_chains import volume_location
from overt.protocol import ErrorCode
from overt.protocol.commands import Empty, VolumeCommit, VolumeCreate, VolumeDelete, VolumeInfo
from overt.protocol.storage import (
    ExtentCommit,
    ExtentFormat,
    ExtentRef,
    Removed,
    SharedVolumeCommit,
    SharedVolumeCreate,
    SharedVolumeDelete,
    SharedVolumeInfo,
    SharedVolumeMetaUpdate,
)
from overt.protocol.vm import DiskFormat


def disk_format(fmt: str) -> DiskFormat:
    return DiskFormat.QCOW2 if fmt == "cow" else DiskFormat.RAW


class LocalVolumes:
    """qcow2 files of a local domain, changed by the domain's own host."""

    # A running VM's QEMU makes the new volumes itself and reaches them as files.
    engine_made: ClassVar[bool] = False  # live overlays made by the engine first

    async def host(self, ctx: JobContext, domain: StorageDomain) -> Host:
        return await storage_host(ctx, domain)

    async def create_overlay(self, ctx: JobContext, host: Host, domain: StorageDomain,
                             disk: Disk, new_path: str, backing_path: str,
                             backing_format: str, key: str) -> None:
        await ctx.nodes.call(host, VolumeCreate(
            path=volume_location(domain, new_path), format=DiskFormat.QCOW2,
            size_bytes=disk.provisioned_size, backing=volume_location(domain, backing_path),
            backing_format=disk_format(backing_format)), VolumeInfo, key=ctx.key(key))

    async def commit(self, ctx: JobContext, host: Host, domain: StorageDomain, *, top: str,
                     base: str, base_format: str, child: str | None, key: str) -> None:
        await ctx.nodes.call(host, VolumeCommit(
            top=volume_location(domain, top), base=volume_location(domain, base),
            base_format=disk_format(base_format),
            child=volume_location(domain, child) if child else None),
            VolumeInfo, key=ctx.key(key), timeout_s=3600)

    async def delete(self, ctx: JobContext, host: Host, domain: StorageDomain,
                     paths: list[str], key: str) -> None:
        for number, path in enumerate(paths):
            try:
                await ctx.nodes.call(host, VolumeDelete(path=volume_location(domain, path)),
                                     Empty, key=ctx.key(f"{key}-{number}"))
            except NodeCommandFailed as exc:
                if exc.error.code is not ErrorCode.IMAGE_MISSING:
                    raise

    async def leaf_again(self, ctx: JobContext, host: Host, domain: StorageDomain, path: str,
                         key: str) -> None:
        """`path` is a disk's active volume again (the one over it was dropped)."""

    async def after_live_merge(self, ctx: JobContext, host: Host, domain: StorageDomain, *,
                               base: str, child: str | None, key: str) -> None:
        """What storage keeps about a chain after QEMU merged a volume into `base`."""

    async def recorded(self, ctx: JobContext, domain: StorageDomain, key: str) -> None:
        """The database recorded a new volume in a disk's chain."""


class NfsVolumes(LocalVolumes):
    """Volumes of an NFS domain in oVirt's layout, each with its `.meta`."""

    engine_made: ClassVar[bool] = True

    async def host(self, ctx: JobContext, domain: StorageDomain) -> Host:
        return await acting_host(ctx, domain)

    async def create_overlay(self, ctx: JobContext, host: Host, domain: StorageDomain,
                             disk: Disk, new_path: str, backing_path: str,
                             backing_format: str, key: str) -> None:
        image_id, volume_id = split_volume_path(new_path)
        backing_image, backing_volume = split_volume_path(backing_path)
        description = json.dumps({"DiskAlias": disk.name, "DiskDescription": disk.description})
        await ctx.nodes.call(host, SharedVolumeCreate(
            storage=export_of(domain), domain_id=domain.storage_uuid or domain.id,
            image_id=image_id, volume_id=volume_id, format=DiskFormat.QCOW2,
            size_bytes=disk.provisioned_size, sparse=True,
            metadata={"DESCRIPTION": description, "CTIME": ctx.ctime()},
            backing_image_id=backing_image, backing_volume_id=backing_volume,
            backing_format=disk_format(backing_format)), SharedVolumeInfo, key=ctx.key(key),
            timeout_s=600)

    async def commit(self, ctx: JobContext, host: Host, domain: StorageDomain, *, top: str,
                     base: str, base_format: str, child: str | None, key: str) -> None:
        image_id, top_id = split_volume_path(top)
        _image, base_id = split_volume_path(base)
        await ctx.nodes.call(host, SharedVolumeCommit(
            storage=export_of(domain), domain_id=domain.storage_uuid or domain.id,
            image_id=image_id, top_id=top_id, base_id=base_id,
            base_format=disk_format(base_format),
            child_id=split_volume_path(child)[1] if child else None),
            SharedVolumeInfo, key=ctx.key(key), timeout_s=3600)

    async def delete(self, ctx: JobContext, host: Host, domain: StorageDomain,
                     paths: list[str], key: str) -> None:
        for number, path in enumerate(paths):
            image_id, volume_id = split_volume_path(path)
            await ctx.nodes.call(host, SharedVolumeDelete(
                storage=export_of(domain), domain_id=domain.storage_uuid or domain.id,
                image_id=image_id, volume_id=volume_id), Removed, key=ctx.key(f"{key}-{number}"))

    async def leaf_again(self, ctx: JobContext, host: Host, domain: StorageDomain, path: str,
                         key: str) -> None:
        await update_metadata(ctx, host, domain, path, {"VOLTYPE": "LEAF"}, key)

    async def after_live_merge(self, ctx: JobContext, host: Host, domain: StorageDomain, *,
                               base: str, child: str | None, key: str) -> None:
        """The volume over the merge names `base` as its parent, or `base` is the image's
        leaf again (QEMU pivoted to it)."""
        if child is not None:
            await update_metadata(ctx, host, domain, child,
                                  {"PUUID": str(split_volume_path(base)[1])}, key)
        else:
            await self.leaf_again(ctx, host, domain, base, key)


class IscsiVolumes(LocalVolumes):
    """Volumes of an iSCSI domain: extents of its LUN the engine allocated (a new volume's
    at the snapshot's submission); a qcow2 volume's header names the extent under it.
    The domain's metadata area, rendered from the database, lists every volume with its
    parent, so it is written again once the database recorded a change. A running VM's
    QEMU opens a new volume as a slice of the LUN (libvirt's `<slices>`, reuse-external)
    and merges one live (block commit); its extent is then free and no longer listed."""

    engine_made: ClassVar[bool] = True

    async def host(self, ctx: JobContext, domain: StorageDomain) -> Host:
        return await acting_host(ctx, domain)

    async def create_overlay(self, ctx: JobContext, host: Host, domain: StorageDomain,
                             disk: Disk, new_path: str, backing_path: str,
                             backing_format: str, key: str) -> None:
        extent = _extent(new_path)
        await ctx.nodes.call(host, ExtentFormat(
            lun=lun_of(domain, ctx.services.secret_box()), offset=extent.offset, size=extent.size,
            format=DiskFormat.QCOW2, virtual_size=disk.provisioned_size,
            backing=_extent(backing_path, backing_format)), SharedVolumeInfo,
            key=ctx.key(key), timeout_s=600)

    async def commit(self, ctx: JobContext, host: Host, domain: StorageDomain, *, top: str,
                     base: str, base_format: str, child: str | None, key: str) -> None:
        await ctx.nodes.call(host, ExtentCommit(
            lun=lun_of(domain, ctx.services.secret_box()), top=_extent(top), base=_extent(base, base_format),
            child=_extent(child) if child else None), SharedVolumeInfo, key=ctx.key(key),
            timeout_s=3600)

    async def delete(self, ctx: JobContext, host: Host, domain: StorageDomain,
                     paths: list[str], key: str) -> None:
        """An extent no chain records is free: the domain's space is counted again and
        its metadata area no longer lists the volume (nothing else to erase)."""
        async with ctx.transaction() as session:
            await recount_extents(session, domain.id)
        await write_lun_metadata(ctx, domain, host, key=f"{key}-md")

    async def recorded(self, ctx: JobContext, domain: StorageDomain, key: str) -> None:
        host = await self.host(ctx, domain)
        await write_lun_metadata(ctx, domain, host, key=f"{key}-md")


def _extent(path: str, fmt: str = "cow") -> ExtentRef:
    extent = extent_of(path)
    if extent is None:
        raise JobFailed(f"volume {path} is not an extent of its iSCSI domain")
    return ExtentRef(offset=extent[0], size=extent[1], format=disk_format(fmt))


_STRATEGIES: dict[str, LocalVolumes] = {
    StorageType.LOCALFS.value: LocalVolumes(),
    StorageType.NFS.value: NfsVolumes(),
    StorageType.ISCSI.value: IscsiVolumes(),
}


def volumes_of(domain: StorageDomain) -> LocalVolumes:
    """The strategy for the volumes of `domain`'s kind."""
    try:
        return _STRATEGIES[domain.storage_type]
    except KeyError:
        raise JobFailed(f"snapshots of disks on {domain.storage_type} domain {domain.name} "
                        "are not supported") from None


async def volume_host(ctx: JobContext, domain: StorageDomain) -> Host:
    """The host that acts on the domain's volumes."""
    return await volumes_of(domain).host(ctx, domain)


async def update_metadata(ctx: JobContext, host: Host, domain: StorageDomain, path: str,
                          changes: dict[str, str], key: str) -> None:
    """Keys of an NFS volume's `.meta` (a volume without one is left alone)."""
    image_id, volume_id = split_volume_path(path)
    await ctx.nodes.call(host, SharedVolumeMetaUpdate(
        storage=export_of(domain), domain_id=domain.storage_uuid or domain.id,
        image_id=image_id, volume_id=volume_id, changes=changes), Removed, key=ctx.key(key))


async def create_overlay(ctx: JobContext, host: Host, domain: StorageDomain, disk: Disk,
                         new_path: str, backing_path: str, backing_format: str, key: str
                         ) -> None:
    """A new qcow2 volume of `disk` at `new_path`, backed by its volume `backing_path`."""
    await volumes_of(domain).create_overlay(ctx, host, domain, disk, new_path, backing_path,
                                            backing_format, key)


async def commit_volume(ctx: JobContext, host: Host, domain: StorageDomain, *, top: str,
                        base: str, base_format: str, child: str | None, key: str) -> None:
    """Merge volume `top` into `base` (its backing); `child` is rebased onto `base`."""
    await volumes_of(domain).commit(ctx, host, domain, top=top, base=base,
                                    base_format=base_format, child=child, key=key)


async def delete_volumes(ctx: JobContext, host: Host, domain: StorageDomain,
                         paths: list[str], key: str) -> None:
    """Delete volumes of a disk that no chain records any more; one already gone counts
    as deleted."""
    await volumes_of(domain).delete(ctx, host, domain, paths, key)


async def chain_recorded(ctx: JobContext, domain: StorageDomain, key: str) -> None:
    await volumes_of(domain).recorded(ctx, domain, key)
