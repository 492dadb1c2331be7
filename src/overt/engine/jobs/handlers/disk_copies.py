"""Full disk copies: a template from a VM, and clones (of a VM or from a template).

Each target disk was recorded `locked` by the service with a fresh image name; the job
copies its source into it, flattened, through one host that reaches both (the local
domain's host, else any host up in the shared domain's data center). A job that fails
for good forgets what it was making (the template, or the clone VM, with their disks)
and hands the half-made images to a removal job: nothing stays `locked` or `illegal`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Disk, DiskAttachment, Host, StorageDomain, Template, Vm
from overt.engine.jobs.context import JobContext, Unit
from overt.engine.jobs.errors import JobFailed
from overt.engine.jobs.handlers import leftovers
from overt.engine.jobs.handlers import storage_domains as shared
from overt.engine.jobs.handlers.snapshot_volumes import volume_host
from overt.engine.jobs.kinds import CloneVm, CreateTemplate, DiskCopy, JobSpec
from overt.engine.model.status import (
    DiskStatus,
    LogSeverity,
    StorageType,
    TemplateStatus,
)
from overt.engine.queries import lookup
from overt.engine.queries.shared_storage import extent_of, lun_of, split_volume_path
from overt.engine.queries.vm_spec import disk_source, image_location
from overt.protocol.storage import (
    IscsiExtentTarget,
    NfsVolumeTarget,
    SealReport,
    SharedVolumeInfo,
    VolumeCopy,
    VolumeSeal,
    VolumeSealProgress,
)
from overt.protocol.vm import DiskFormat, FileSource, IscsiSource, NfsSource

SEAL_TIMEOUT_S = 1800  # virt-sysprep boots its appliance: ~30 s under TCG for a small disk
SEAL_PROGRESS_INTERVAL_S = 2.0
log = logging.getLogger(__name__)


async def copy_host(ctx: JobContext, source: StorageDomain, target: StorageDomain) -> Host:
    """The host that copies between two domains: a local domain's own host (it alone
    reaches its directory), else one that acts on the target."""
    local = next((d for d in (source, target)
                  if d.storage_type == StorageType.LOCALFS.value), None)
    return await volume_host(ctx, local or target)


def copy_source(ctx: JobContext, domain: StorageDomain, disk: Disk
            ) -> FileSource | NfsSource | IscsiSource:
    if domain.storage_type in (StorageType.NFS.value, StorageType.ISCSI.value,
                               StorageType.LOCALFS.value):
        return disk_source(domain, disk, ctx.services.secret_box())
    raise JobFailed(f"disk {disk.name} is on a {domain.storage_type} domain, which Overt "
                    "cannot copy yet")


def copy_target(ctx: JobContext, domain: StorageDomain, disk: Disk, *, shared_by_vms: bool
            ) -> FileSource | NfsVolumeTarget | IscsiExtentTarget:
    if domain.storage_type == StorageType.LOCALFS.value:
        return FileSource(path=image_location(domain, disk))
    if domain.storage_type == StorageType.ISCSI.value:
        extent = extent_of(disk.image_path)
        if extent is None:
            raise JobFailed(f"disk {disk.name} has no extent of its iSCSI domain")
        return IscsiExtentTarget(lun=lun_of(domain, ctx.services.secret_box()),
                                 offset=extent[0], size=extent[1])
    if domain.storage_type != StorageType.NFS.value:
        raise JobFailed(f"storage domain {domain.name} is {domain.storage_type}; copies go to "
                        "local, NFS or iSCSI domains")
    image_id, volume_id = split_volume_path(disk.image_path)
    description = json.dumps({"DiskAlias": disk.name, "DiskDescription": disk.description})
    return NfsVolumeTarget(storage=shared.export_of(domain),
                           domain_id=domain.storage_uuid or domain.id, image_id=image_id,
                           volume_id=volume_id, metadata={
                               "DESCRIPTION": description, "CTIME": ctx.ctime(),
                               # oVirt's mark of a template's volume: others build on it.
                               "VOLTYPE": "SHARED" if shared_by_vms else "LEAF"})


async def copy_image(ctx: JobContext, copy: DiskCopy, *, for_template: bool) -> None:
    async with ctx.transaction() as session:
        source = await lookup.get(session, Disk, copy.source)
        target = await lookup.get(session, Disk, copy.target)
        if target.status == DiskStatus.OK:
            return  # copied by an earlier try of this job
        source_domain = await lookup.domain_of(session, source)
        target_domain = await lookup.domain_of(session, target)
    host = await copy_host(ctx, source_domain, target_domain)
    async with ctx.step(f"Copying disk {source.name} to disk {target.name} on storage domain "
                        f"{target_domain.name}", host_id=host.id):
        made = await ctx.nodes.call(host, VolumeCopy(
            source=copy_source(ctx, source_domain, source),
            target=copy_target(ctx, target_domain, target, shared_by_vms=for_template),
            format=DiskFormat.QCOW2 if target.format == "cow" else DiskFormat.RAW,
            size_bytes=target.provisioned_size, sparse=target.sparse),
            SharedVolumeInfo, key=ctx.key(f"copy-{target.id}"), timeout_s=3600)
        if target_domain.storage_type == StorageType.ISCSI.value:
            await shared.write_lun_metadata(ctx, target_domain, host,
                                            key=f"copy-md-{target.id}")
    async with ctx.transaction() as session:
        disk = await lookup.get(session, Disk, copy.target)
        disk.status, disk.actual_size = DiskStatus.OK, made.actual_size
        disk.provisioned_size = max(disk.provisioned_size, made.virtual_size)
        audit.record(session, f"Disk {disk.name} was copied from disk {source.name} to "
                     f"{target_domain.name}", code=audit.DISK_CREATED,
                     storage_domain_id=target_domain.id, job_id=ctx.job.id,
                     user_id=ctx.job.owner_id)


async def _seal(ctx: JobContext, spec: CreateTemplate) -> None:
    """oVirt's sealing: virt-sysprep on the template's boot disk (its first disk when
    none is bootable), through the host that made the copy."""
    async with ctx.transaction() as session:
        template = await lookup.get(session, Template, spec.template_id)
        attached = [(a, d) for a, d in await session.execute(
            select(DiskAttachment, Disk).join(Disk, Disk.id == DiskAttachment.disk_id)
            .where(DiskAttachment.template_id == template.id).order_by(DiskAttachment.pk))]
        if not attached:
            return
        _attachment, disk = next(((a, d) for a, d in attached if a.bootable), attached[0])
        domain = await lookup.domain_of(session, disk)
    host = await volume_host(ctx, domain)
    title = f"Sealing template {template.name}"
    volume = copy_source(ctx, domain, disk)
    async with ctx.step(title, host_id=host.id) as step:
        sealing = asyncio.ensure_future(ctx.nodes.call(host, VolumeSeal(
            volume=volume, format=DiskFormat.QCOW2 if disk.format == "cow" else DiskFormat.RAW,
            timeout_s=SEAL_TIMEOUT_S), SealReport, key=ctx.key(f"seal-{disk.id}"),
            timeout_s=SEAL_TIMEOUT_S + 60))
        try:
            async def read() -> tuple[str, int] | None:
                progress = await ctx.nodes.call(host, VolumeSealProgress(volume=volume),
                                                timeout_s=10)
                return (progress.stage, progress.percent) if progress.running else None
            await ctx.follow_step(step.id, title, sealing, read,
                                  interval_s=SEAL_PROGRESS_INTERVAL_S)
            await sealing
        finally:
            sealing.cancel()
        await ctx.update_step(step.id, description=title, progress=100)


async def create_template(ctx: JobContext, spec: CreateTemplate) -> dict[str, Any]:
    for copy in spec.copies:
        await copy_image(ctx, copy, for_template=True)
    if spec.seal:
        await _seal(ctx, spec)
    async with ctx.transaction() as session:
        template = await lookup.get(session, Template, spec.template_id)
        vm = await lookup.get(session, Vm, spec.vm_id)
        template.status = TemplateStatus.OK
        audit.record(session, f"Template {template.name} was created from VM {vm.name}",
                     code=audit.TEMPLATE_ADDED, vm_id=vm.id, cluster_id=vm.cluster_id,
                     job_id=ctx.job.id, user_id=ctx.job.owner_id)
    return {"disks": len(spec.copies)}


async def clone_vm(ctx: JobContext, spec: CloneVm) -> dict[str, Any]:
    for copy in spec.copies:
        await copy_image(ctx, copy, for_template=False)
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, spec.vm_id)
        audit.record(session, f"VM {vm.name} was cloned with {len(spec.copies)} disk(s) of "
                     "its own", code=audit.VM_CLONED, vm_id=vm.id, cluster_id=vm.cluster_id,
                     job_id=ctx.job.id, user_id=ctx.job.owner_id)
    return {"disks": len(spec.copies)}


async def _forget_copies(session: AsyncSession, ctx: JobContext, copies: tuple[DiskCopy, ...],
                         message: str) -> None:
    """The targets are removed at once (none stays `locked` or `illegal`); whatever part
    of them reached storage goes to one removal job (`leftovers`; removing nothing is
    fine)."""
    left = []
    for copy in copies:
        disk = await session.get(Disk, copy.target)
        if disk is not None:
            left.append(await leftovers.forget_disk(session, disk))
    if left:
        await leftovers.remove_later(session, ctx, left, message=message)


async def template_failed(session: AsyncSession, ctx: JobContext, spec: CreateTemplate,
                          message: str) -> None:
    """oVirt's way: a template that could not be made is removed, with its disks."""
    template = await session.get(Template, spec.template_id)
    await _forget_copies(session, ctx, spec.copies, message)
    if template is None:
        return
    audit.record(session, f"Creating template {template.name} failed: {message}",
                 code=audit.TEMPLATE_ADD_FAILED, severity=LogSeverity.ERROR, vm_id=spec.vm_id,
                 job_id=ctx.job.id, user_id=ctx.job.owner_id)
    await session.delete(template)


async def clone_failed(session: AsyncSession, ctx: JobContext, spec: CloneVm,
                       message: str) -> None:
    """A clone that could not be made is removed, with its disks."""
    vm = await session.get(Vm, spec.vm_id)
    await _forget_copies(session, ctx, spec.copies, message)
    if vm is None:
        return
    audit.record(session, f"Cloning VM {vm.name} failed: {message}",
                 code=audit.VM_CLONE_FAILED, severity=LogSeverity.ERROR,
                 job_id=ctx.job.id, user_id=ctx.job.owner_id)
    await session.delete(vm)


UNITS: dict[type[JobSpec], Unit[Any]] = {
    CreateTemplate: Unit(create_template, compensate=template_failed),
    CloneVm: Unit(clone_vm, compensate=clone_failed),
}
