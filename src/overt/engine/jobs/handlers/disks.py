"""Disk jobs: creating images on storage (empty, or a thin copy of a template's disk)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import (
    Disk,
    DiskAttachment,
    StorageDomain,
    Template,
    Vm,
)
from overt.engine.jobs.context import JobContext, Unit
from overt.engine.jobs.errors import JobFailed
from overt.engine.jobs.handlers import leftovers
from overt.engine.jobs.handlers import storage_domains as shared
from overt.engine.jobs.kinds import CreateDisk, JobSpec, RemoveDisk
from overt.engine.model.status import DiskStatus, LogSeverity, TemplateStatus
from overt.engine.nodes import NodeCommandFailed
from overt.engine.queries import lookup
from overt.engine.queries.shared_storage import is_shared, recount_extents
from overt.engine.queries.snapshot_chains import all_volumes, volume_location
from overt.engine.queries.vm_spec import image_location
from overt.protocol import ErrorCode
from overt.protocol.commands import Empty, VolumeCreate, VolumeDelete, VolumeInfo
from overt.protocol.vm import DiskFormat


async def create_disk(ctx: JobContext, spec: CreateDisk) -> dict[str, Any]:
    disk_id = spec.disk_id
    async with ctx.transaction() as session:
        disk = await lookup.get(session, Disk, disk_id)
        domain = await lookup.domain_of(session, disk)
        backing, base = None, None
        if disk.backing_disk_id is not None:
            base = await lookup.get(session, Disk, disk.backing_disk_id)
            base_domain = await lookup.domain_of(session, base)
            backing = image_location(base_domain, base)
    if is_shared(domain):
        if spec.copy_from:
            raise JobFailed(f"disks on {domain.storage_type} domains are not made from files")
        made = await shared.create_volume(ctx, domain, disk, backing=base)
        return await _created(ctx, disk_id, domain, made.actual_size, made.virtual_size)
    host = await shared.storage_host(ctx, domain)
    fmt = DiskFormat.QCOW2 if disk.format == "cow" else DiskFormat.RAW
    async with ctx.step(f"Creating disk {disk.name} on storage domain {domain.name}",
                        host_id=host.id):
        info = await ctx.nodes.call(
            host, VolumeCreate(path=image_location(domain, disk), format=fmt,
                               size_bytes=disk.provisioned_size, backing=backing,
                               backing_format=DiskFormat.QCOW2 if backing else None,
                               copy_from=spec.copy_from),
            VolumeInfo, key=ctx.key("create"), timeout_s=600)
    return await _created(ctx, disk_id, domain, info.actual_size, info.virtual_size)


async def _created(ctx: JobContext, disk_id: uuid.UUID, domain: StorageDomain,
                   actual_size: int, virtual_size: int) -> dict[str, Any]:
    async with ctx.transaction() as session:
        disk = await lookup.get(session, Disk, disk_id)
        disk.status, disk.actual_size = DiskStatus.OK, actual_size
        disk.provisioned_size = max(disk.provisioned_size, virtual_size)
        if disk.template_id is not None:
            await _unlock_template(session, disk.template_id)
        audit.record(session, f"Disk {disk.name} was created on {domain.name}",
                     code=audit.DISK_CREATED, storage_domain_id=domain.id, job_id=ctx.job.id,
                     user_id=ctx.job.owner_id)
    return {"actual_size": actual_size}


async def _unlock_template(session: AsyncSession, template_id: uuid.UUID) -> None:
    """A template is usable once all of its disks are."""
    template = await session.get(Template, template_id)
    pending = (await session.execute(select(Disk.id).where(
        Disk.template_id == template_id, Disk.status != DiskStatus.OK))).first()
    if template is not None and pending is None:
        template.status = TemplateStatus.OK


async def create_failed(session: AsyncSession, ctx: JobContext, spec: CreateDisk,
                        message: str) -> None:
    """oVirt's AddDisk on failure: the disk is removed with its attachment (and the template
    it was imported for), and a removal job submitted here takes whatever part of its image
    reached storage away (`leftovers`; an iSCSI extent stays reserved until then).
    Nothing stays `locked` or `illegal`."""
    disk = await session.get(Disk, spec.disk_id)
    if disk is None or disk.status != DiskStatus.LOCKED:
        return
    domain = await lookup.domain_of(session, disk)
    vm_id = (await session.execute(select(DiskAttachment.vm_id).where(
        DiskAttachment.disk_id == disk.id, DiskAttachment.vm_id.is_not(None)))).scalars().first()
    template = await session.get(Template, disk.template_id) if disk.template_id else None
    left = await leftovers.forget_disk(session, disk)
    await leftovers.remove_later(session, ctx, [left], message=message)
    audit.record(session, f"Creating disk {disk.name} failed: {message}. The disk was removed"
                 f"{' from VM ' + await _vm_name(session, vm_id) if vm_id else ''}; what was "
                 f"made of its image is being removed from storage domain {domain.name}.",
                 code=audit.DISK_ADD_FAILED, severity=LogSeverity.ERROR, vm_id=vm_id,
                 storage_domain_id=domain.id, job_id=ctx.job.id, user_id=ctx.job.owner_id)
    if template is not None:
        await _drop_template(session, ctx, template, message)


async def _vm_name(session: AsyncSession, vm_id: uuid.UUID) -> str:
    return (await lookup.get(session, Vm, vm_id)).name


async def _drop_template(session: AsyncSession, ctx: JobContext, template: Template,
                         message: str) -> None:
    """A template imported with the disk goes with it, as a template whose creation
    failed does in oVirt."""
    others = (await session.execute(select(Disk.id).where(
        Disk.template_id == template.id))).first()
    if others is not None:  # not an import's: its other disks stay with it
        return
    audit.record(session, f"Creating template {template.name} failed: {message}. The "
                 "template was removed.", code=audit.TEMPLATE_ADD_FAILED,
                 severity=LogSeverity.ERROR, job_id=ctx.job.id, user_id=ctx.job.owner_id)
    await session.delete(template)


async def remove_disk(ctx: JobContext, spec: RemoveDisk) -> dict[str, Any]:
    disk_id = spec.disk_id
    async with ctx.transaction() as session:
        disk = await lookup.get(session, Disk, disk_id)
        domain = await lookup.domain_of(session, disk)
    if is_shared(domain):
        await shared.remove_volume(ctx, domain, disk)
    else:
        await _remove_local(ctx, domain, disk)
    async with ctx.transaction() as session:
        disk = await lookup.get(session, Disk, disk_id)
        audit.record(session, f"Disk {disk.name} was removed", code=audit.DISK_REMOVED,
                     storage_domain_id=domain.id, job_id=ctx.job.id, user_id=ctx.job.owner_id)
        await session.delete(disk)
        if is_shared(domain):  # with the row (and its snapshots' volumes): freed once
            await recount_extents(session, domain.id)
    return {}


async def _remove_local(ctx: JobContext, domain: StorageDomain, disk: Disk) -> None:
    host = await shared.storage_host(ctx, domain)
    async with ctx.transaction() as session:
        volumes = await all_volumes(session, disk)
    async with ctx.step(f"Removing disk {disk.name}", host_id=host.id):
        for number, image_path in enumerate(volumes):  # its snapshots' volumes too
            try:
                await ctx.nodes.call(host, VolumeDelete(path=volume_location(domain, image_path)),
                                     Empty, key=ctx.key(f"delete-{number}" if number else "delete"))
            except NodeCommandFailed as exc:
                if exc.error.code is not ErrorCode.IMAGE_MISSING:
                    raise


UNITS: dict[type[JobSpec], Unit[Any]] = {
    CreateDisk: Unit(create_disk, compensate=create_failed),
    RemoveDisk: Unit(remove_disk),
}
