"""The volume work of snapshot jobs, whatever the domain: a local domain's files through
its own host (volume.*), an NFS domain's volumes with their `.meta` through any host of
its data center (storage.volume_*): all of a down VM's, and for a running VM's NFS disks
the new volumes (made before QEMU opens them) and the `.meta` files after a live merge.

Every call is safe to repeat: the job machinery retries a step whose reply was lost,
and an engine that restarts runs the job again from its recorded progress.
"""

from __future__ import annotations

import json

from overt.engine.db.tables import Disk, Host, StorageDomain
from overt.engine.jobs.context import JobContext
from overt.engine.jobs.errors import JobFailed
from overt.engine.jobs.handlers.disks import storage_host
from overt.engine.jobs.handlers.storage_domains import acting_host, export_of
from overt.engine.model.status import StorageType
from overt.engine.nodes import NodeCommandFailed
from overt.engine.queries.shared_storage import split_volume_path
from overt.engine.queries.snapshot_chains import volume_location
from overt.protocol import ErrorCode
from overt.protocol.commands import Empty, VolumeCommit, VolumeCreate, VolumeDelete, VolumeInfo
from overt.protocol.storage import (
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


def on_nfs(domain: StorageDomain) -> bool:
    if domain.storage_type == StorageType.NFS.value:
        return True
    if domain.storage_type == StorageType.LOCALFS.value:
        return False
    raise JobFailed(f"snapshots of disks on {domain.storage_type} domain {domain.name} are "
                    "not supported")


async def volume_host(ctx: JobContext, domain: StorageDomain) -> Host:
    """The host that acts on the domain's volumes."""
    return await (acting_host(ctx, domain) if on_nfs(domain) else storage_host(ctx, domain))


async def update_metadata(ctx: JobContext, host: Host, domain: StorageDomain, path: str,
                          changes: dict[str, str], key: str) -> None:
    """Keys of an NFS volume's `.meta` (a volume without one is left alone)."""
    image_id, volume_id = split_volume_path(path)
    await ctx.nodes.call(host, SharedVolumeMetaUpdate(
        storage=export_of(domain), domain_id=domain.storage_uuid or domain.id,
        image_id=image_id, volume_id=volume_id, changes=changes), Removed, key=ctx.key(key))


async def after_live_merge(ctx: JobContext, host: Host, domain: StorageDomain, *, base: str,
                           child: str | None, key: str) -> None:
    """The `.meta` files after QEMU merged a volume into `base`: the volume over it names
    `base` as its parent, or `base` is the image's leaf again (QEMU pivoted to it)."""
    if not on_nfs(domain):
        return
    if child is not None:
        await update_metadata(ctx, host, domain, child,
                              {"PUUID": str(split_volume_path(base)[1])}, key)
    else:
        await update_metadata(ctx, host, domain, base, {"VOLTYPE": "LEAF"}, key)


async def create_overlay(ctx: JobContext, host: Host, domain: StorageDomain, disk: Disk,
                         new_path: str, backing_path: str, backing_format: str, key: str
                         ) -> None:
    """A new qcow2 volume of `disk` at `new_path`, backed by its volume `backing_path`."""
    if not on_nfs(domain):
        await ctx.nodes.call(host, VolumeCreate(
            path=volume_location(domain, new_path), format=DiskFormat.QCOW2,
            size_bytes=disk.provisioned_size, backing=volume_location(domain, backing_path),
            backing_format=disk_format(backing_format)), VolumeInfo, key=ctx.key(key))
        return
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


async def commit_volume(ctx: JobContext, host: Host, domain: StorageDomain, *, top: str,
                        base: str, base_format: str, child: str | None, key: str) -> None:
    """Merge volume `top` into `base` (its backing); `child` is rebased onto `base`."""
    if not on_nfs(domain):
        await ctx.nodes.call(host, VolumeCommit(
            top=volume_location(domain, top), base=volume_location(domain, base),
            base_format=disk_format(base_format),
            child=volume_location(domain, child) if child else None),
            VolumeInfo, key=ctx.key(key), timeout_s=3600)
        return
    image_id, top_id = split_volume_path(top)
    _image, base_id = split_volume_path(base)
    await ctx.nodes.call(host, SharedVolumeCommit(
        storage=export_of(domain), domain_id=domain.storage_uuid or domain.id,
        image_id=image_id, top_id=top_id, base_id=base_id,
        base_format=disk_format(base_format),
        child_id=split_volume_path(child)[1] if child else None),
        SharedVolumeInfo, key=ctx.key(key), timeout_s=3600)


async def delete_volumes(ctx: JobContext, host: Host, domain: StorageDomain,
                         paths: list[str], key: str) -> None:
    """Delete volumes of a disk; one already gone counts as deleted."""
    for number, path in enumerate(paths):
        numbered = ctx.key(f"{key}-{number}")
        if on_nfs(domain):
            image_id, volume_id = split_volume_path(path)
            await ctx.nodes.call(host, SharedVolumeDelete(
                storage=export_of(domain), domain_id=domain.storage_uuid or domain.id,
                image_id=image_id, volume_id=volume_id), Removed, key=numbered)
            continue
        try:
            await ctx.nodes.call(host, VolumeDelete(path=volume_location(domain, path)), Empty,
                                 key=numbered)
        except NodeCommandFailed as exc:
            if exc.error.code is not ErrorCode.IMAGE_MISSING:
                raise
