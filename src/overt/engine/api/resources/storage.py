"""/storagedomains (and as attached to data centers) and /disks."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from overt.engine.api import views
from overt.engine.api.context import ApiContext
from overt.engine.api.inventory_readers import read_storage_domain
from overt.engine.api.memory_disks import memory_disk_view, memory_disks
from overt.engine.api.readers import read_disk, ref_of
from overt.engine.api.resources.common import action_done, action_params, list_rows
from overt.engine.api.resources.storage_connections import secret_box
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.wire.render import Representation
from overt.engine.db.tables import Disk, DiskAttachment, Host, StorageDomain
from overt.engine.model.errors import InvalidInput, NotFound
from overt.engine.model.status import StorageType
from overt.engine.queries import lookup, shared_storage
from overt.engine.services import (
    devices,
    disk_moves,
    host_iscsi,
    storage_domains,
    storage_shared,
)
from overt.engine.services.host_iscsi import IscsiDetailsInput
from overt.engine.services.jobs import wait_for_job
from overt.engine.services.storage_domains import StorageDomainInput

routes = ApiRoutes()


async def domain_views(session: AsyncSession, rows: Sequence[StorageDomain]
                       ) -> list[Representation]:
    """The domains' views, each iSCSI one with its LUN as the hosts' LUN lists saw it."""
    listed = await shared_storage.listed_luns(session, rows)
    return [views.storage_domain(row, listed) for row in rows]


async def domain_view(session: AsyncSession, domain: StorageDomain) -> Representation:
    return (await domain_views(session, [domain]))[0]


@routes.get("/storagedomains")
async def list_domains(ctx: ApiContext) -> Response:
    rows = await list_rows(ctx, select(StorageDomain).order_by(StorageDomain.name),
                           {"name": StorageDomain.name, "status": StorageDomain.status,
                            "type": StorageDomain.type})
    return ctx.render_list("storage_domains", "storage_domain",
                           await domain_views(ctx.session, rows))


@routes.get("/storagedomains/{sd_id}")
async def get_domain(ctx: ApiContext) -> Response:
    domain = await lookup.get(ctx.session, StorageDomain, ctx.id_param("sd_id"))
    return ctx.render("storage_domain", await domain_view(ctx.session, domain))


@routes.post("/storagedomains")
async def add_domain(ctx: ApiContext) -> Response:
    data = read_storage_domain(await ctx.body("storage_domain"))
    if data.storage_type is StorageType.NFS:
        domain = await storage_shared.add_nfs_domain(ctx.session, ctx.services.jobs, data,
                                                     ctx.user)
    elif data.storage_type is StorageType.ISCSI and data.import_:
        return await _import_iscsi_domain(ctx, data)
    elif data.storage_type is StorageType.ISCSI:
        units = data.logical_units
        if len(units) == 1 and host_iscsi.needs_resolving(units[0].id, units[0].lun_mapping):
            return await _add_iscsi_domain_by_scsi_id(ctx, data)
        domain = await storage_shared.add_iscsi_domain(ctx.session, ctx.services.jobs,
                                                       secret_box(ctx), data, ctx.user)
    else:
        domain = await storage_domains.add_storage_domain(ctx.session, data, ctx.user)
    return ctx.render("storage_domain", await domain_view(ctx.session, domain), status=201)


async def _add_iscsi_domain_by_scsi_id(ctx: ApiContext, data: StorageDomainInput) -> Response:
    """An iSCSI domain whose logical unit is named by its SCSI id (as oVirt's LUN list
    shows it): the domain's host lists the target's LUNs first (a job the API waits for),
    and the domain is added on the LUN of that id, recorded by its number as ever."""
    unit = data.logical_units[0]
    host = await lookup.resolve(ctx.session, Host, data.host, "storage_domain.host")
    details = IscsiDetailsInput(address=unit.address, port=unit.port, target=unit.target,
                                username=unit.username, password=unit.password)
    job = await host_iscsi.submit(ctx.session, ctx.services.jobs, secret_box(ctx), host.id,
                                  "luns", details, ctx.user)
    job_id, db = job.id, ctx.request.app.state.db

    async def answer() -> Response:
        done = await wait_for_job(db, job_id, timeout_s=host_iscsi.WAIT_S,
                                  what=f"Listing the LUNs of {unit.target} on host {host.name}")
        unit.lun_mapping = host_iscsi.lun_number(done.result or {}, unit.id or "",
                                                 unit.address or "", unit.port or 3260,
                                                 unit.target or "")
        async with db.transaction() as session:
            domain = await storage_shared.add_iscsi_domain(session, ctx.services.jobs,
                                                           secret_box(ctx), data, ctx.user)
            rep = await domain_view(session, domain)
        return ctx.render("storage_domain", rep, status=201)
    ctx.then = answer
    return ctx.render("action", {"status": "pending"})


async def _import_iscsi_domain(ctx: ApiContext, data: StorageDomainInput) -> Response:
    """oVirt's import of an existing block domain: the domain's host reads the LUN's
    metadata area first (a job the API waits for), so a LUN holding no Overt domain, a
    domain attached elsewhere or known here already is refused (4xx) with nothing
    recorded; then the domain is recorded with its id and an import job adopts its disks."""
    job = await storage_shared.import_reading(ctx.session, ctx.services.jobs, secret_box(ctx),
                                              data, ctx.user)
    job_id, db = job.id, ctx.request.app.state.db
    unit = data.logical_units[0]

    async def answer() -> Response:
        done = await wait_for_job(db, job_id, timeout_s=host_iscsi.WAIT_S,
                                  what=f"Reading LUN {unit.id} of {unit.target}")
        found = dict(done.result or {})
        if found.get("lun") is None:
            raise InvalidInput(f"logical_unit.id {unit.id!r} is neither a LUN number nor the "
                               f"SCSI id of a LUN of {unit.target}")
        unit.lun_mapping = int(found["lun"])
        async with db.transaction() as session:
            domain = await storage_shared.add_iscsi_domain(
                session, ctx.services.jobs, secret_box(ctx), data, ctx.user, found=found)
            rep = await domain_view(session, domain)
        return ctx.render("storage_domain", rep, status=201)
    ctx.then = answer
    return ctx.render("action", {"status": "pending"})


@routes.post("/datacenters/{dc_id}/storagedomains")
async def attach_domain(ctx: ApiContext) -> Response:
    domain = await storage_shared.attach_domain(
        ctx.session, ctx.services.jobs, ctx.id_param("dc_id"),
        ref_of(await ctx.body("storage_domain")), ctx.user)
    return ctx.render("storage_domain", await domain_view(ctx.session, domain), status=201)


@routes.delete("/datacenters/{dc_id}/storagedomains/{sd_id}")
async def detach_domain(ctx: ApiContext) -> Response:
    await storage_shared.detach_domain(ctx.session, ctx.services.jobs, ctx.id_param("dc_id"),
                                       ctx.id_param("sd_id"), ctx.user)
    return action_done(ctx)


@routes.put("/storagedomains/{sd_id}")
async def update_domain(ctx: ApiContext) -> Response:
    domain = await storage_domains.update_storage_domain(
        ctx.session, ctx.id_param("sd_id"), read_storage_domain(await ctx.body("storage_domain")),
        ctx.user)
    return ctx.render("storage_domain", await domain_view(ctx.session, domain))


@routes.delete("/storagedomains/{sd_id}")
async def remove_domain(ctx: ApiContext) -> Response:
    await storage_domains.remove_storage_domain(ctx.session, ctx.id_param("sd_id"), ctx.user)
    return action_done(ctx)


@routes.post("/storagedomains/{sd_id}/isattached")
async def is_attached(ctx: ApiContext) -> Response:
    """Whether the domain belongs to a data center (oVirt asks a host; the engine knows)."""
    await action_params(ctx)
    domain = await lookup.get(ctx.session, StorageDomain, ctx.id_param("sd_id"))
    return action_done(ctx, is_attached=domain.data_center_id is not None)


@routes.get("/datacenters/{dc_id}/storagedomains/{sd_id}")
async def get_attached_domain(ctx: ApiContext) -> Response:
    domain = await storage_domains.attached(ctx.session, ctx.id_param("dc_id"),
                                            ctx.id_param("sd_id"))
    return ctx.render("storage_domain", await domain_view(ctx.session, domain))


@routes.post("/datacenters/{dc_id}/storagedomains/{sd_id}/deactivate")
async def deactivate_domain(ctx: ApiContext) -> Response:
    await action_params(ctx)
    await storage_domains.deactivate_storage_domain(
        ctx.session, ctx.id_param("dc_id"), ctx.id_param("sd_id"), ctx.user)
    return action_done(ctx)


@routes.post("/datacenters/{dc_id}/storagedomains/{sd_id}/activate")
async def activate_domain(ctx: ApiContext) -> Response:
    await action_params(ctx)
    await storage_domains.activate_storage_domain(
        ctx.session, ctx.id_param("dc_id"), ctx.id_param("sd_id"), ctx.user)
    return action_done(ctx)


@routes.get("/storagedomains/{sd_id}/disks")
async def domain_disks(ctx: ApiContext) -> Response:
    domain = await lookup.get(ctx.session, StorageDomain, ctx.id_param("sd_id"))
    rows = await list_rows(ctx, select(Disk).where(Disk.storage_domain_id == domain.id)
                           .order_by(Disk.name), {"name": Disk.name, "status": Disk.status})
    return ctx.render_list("disks", "disk", [views.disk(r) for r in rows]
                           + await _memory_listed(ctx, domain.id))


@routes.get("/disks")
async def list_disks(ctx: ApiContext) -> Response:
    rows = await list_rows(ctx, select(Disk).order_by(Disk.name),
                           {"name": Disk.name, "alias": Disk.name, "status": Disk.status,
                            "id": Disk.id})
    return ctx.render_list("disks", "disk", [views.disk(r) for r in rows]
                           + await _memory_listed(ctx, None))


async def _memory_listed(ctx: ApiContext, domain_id: uuid.UUID | None) -> list[Representation]:
    """The snapshots' memory disks a plain listing adds (for a caller who sees every
    object, with no `search` or `max`: those filter and page the disks' table only)."""
    params = ctx.request.query_params
    access = getattr(ctx.request.state, "access", None)
    if "search" in params or "max" in params or (access is not None
                                                 and not access.system_wide):
        return []
    return [memory_disk_view(m) for m in await memory_disks(ctx.session, domain_id=domain_id)]


@routes.get("/disks/{disk_id}")
async def get_disk(ctx: ApiContext) -> Response:
    disk_id = ctx.id_param("disk_id")
    disk = await ctx.session.get(Disk, disk_id)
    if disk is None:
        memory = await memory_disks(ctx.session, disk_id=disk_id)
        if memory:
            return ctx.render("disk", memory_disk_view(memory[0]))
    return ctx.render("disk", views.disk(await lookup.get(ctx.session, Disk, disk_id)))


@routes.post("/disks")
async def add_disk(ctx: ApiContext) -> Response:
    disk = await devices.add_disk(ctx.session, ctx.services.jobs,
                                  read_disk(await ctx.body("disk")), ctx.user,
                                  box=secret_box(ctx))
    return ctx.render("disk", views.disk(disk), status=201)


@routes.delete("/disks/{disk_id}")
async def remove_disk(ctx: ApiContext) -> Response:
    disk = await lookup.get(ctx.session, Disk, ctx.id_param("disk_id"))
    await devices.remove_disk_job(ctx.session, ctx.services.jobs, disk, ctx.user)
    return action_done(ctx)


def _correlation(ctx: ApiContext) -> str | None:
    return ctx.request.headers.get("correlation-id") or ctx.request.query_params.get(
        "correlation_id")


@routes.post("/disks/{disk_id}/copy")
async def copy_disk(ctx: ApiContext) -> Response:
    """oVirt's `<action><storage_domain id=".."/><disk><name>NEW</name></disk></action>`:
    a new floating disk on the domain (named as given, else as the source)."""
    action = await ctx.body("action")
    disk = action.child("disk")
    name = (disk.get_str("name") or disk.get_str("alias")) if disk is not None else None
    job = await disk_moves.copy_disk(ctx.session, ctx.services.jobs, ctx.id_param("disk_id"),
                                     ref_of(action.child("storage_domain")), name, ctx.user,
                                     correlation_id=_correlation(ctx))
    return action_done(ctx, job)


@routes.post("/disks/{disk_id}/move")
async def move_disk(ctx: ApiContext) -> Response:
    """oVirt's `<action><storage_domain id=".."/></action>`: the disk's volume moved there
    (live, when a running VM uses it)."""
    action = await ctx.body("action")
    job = await disk_moves.move_disk(ctx.session, ctx.services.jobs, ctx.id_param("disk_id"),
                                     ref_of(action.child("storage_domain")), ctx.user,
                                     correlation_id=_correlation(ctx))
    return action_done(ctx, job)


@routes.post("/vms/{vm_id}/disks/{disk_id}/move")
async def move_vm_disk(ctx: ApiContext) -> Response:
    """oVirt's VM disk `move` (VmDiskService.move): the same move, of a disk the VM has."""
    action = await ctx.body("action")
    vm_id, disk_id = ctx.id_param("vm_id"), ctx.id_param("disk_id")
    attached = (await ctx.session.execute(select(DiskAttachment.pk).where(
        DiskAttachment.vm_id == vm_id, DiskAttachment.disk_id == disk_id))).first()
    if attached is None:
        raise NotFound(f"VM {vm_id} has no disk {disk_id}")
    job = await disk_moves.move_disk(ctx.session, ctx.services.jobs, disk_id,
                                     ref_of(action.child("storage_domain")), ctx.user,
                                     correlation_id=_correlation(ctx))
    return action_done(ctx, job)
