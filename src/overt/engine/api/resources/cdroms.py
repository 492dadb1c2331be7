"""A VM's cdrom (`/vms/{id}/cdroms`), the ISO images of a storage domain as oVirt lists
them (`/storagedomains/{id}/files`) and the operating system types (`/operatingsystems`)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from starlette.responses import Response

from overt.engine.api.context import ApiContext, href
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.views import ref
from overt.engine.api.wire.render import Representation
from overt.engine.db.tables import Disk, StorageDomain, Vm
from overt.engine.model.errors import NotFound
from overt.engine.model.operating_systems import BY_ID, BY_NAME, OPERATING_SYSTEMS, OperatingSystem
from overt.engine.queries import lookup
from overt.engine.services import cdroms
from overt.engine.services.jobs import wait_for_job

routes = ApiRoutes()
CDROM_WAIT_S = 60.0


def cdrom_view(vm: Vm, disk_id: uuid.UUID | None) -> Representation:
    base = href("vms", vm.id, "cdroms", cdroms.CDROM_ID)
    rep: Representation = {"href": base, "id": str(cdroms.CDROM_ID), "vm": ref("vms", vm.id)}
    rep["file"] = {"id": str(disk_id)} if disk_id is not None else None
    return rep


def _cdrom_id(ctx: ApiContext) -> None:
    if ctx.id_param("cdrom_id") != cdroms.CDROM_ID:
        raise NotFound(f"VM has no cdrom {ctx.path_params['cdrom_id']}")


@routes.get("/vms/{vm_id}/cdroms")
async def list_cdroms(ctx: ApiContext) -> Response:
    vm = await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"))
    current = ctx.flag("current")
    return ctx.render_list("cdroms", "cdrom",
                           [cdrom_view(vm, cdroms.cdrom_disk_id(vm, current=current))])


@routes.get("/vms/{vm_id}/cdroms/{cdrom_id}")
async def get_cdrom(ctx: ApiContext) -> Response:
    vm = await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"))
    _cdrom_id(ctx)
    return ctx.render("cdrom", cdrom_view(vm, cdroms.cdrom_disk_id(vm, current=ctx.flag(
        "current"))))


@routes.put("/vms/{vm_id}/cdroms/{cdrom_id}")
async def update_cdrom(ctx: ApiContext) -> Response:
    """oVirt's change of media: `<cdrom><file id="ISO"/></cdrom>`; an empty id ejects."""
    vm = await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"), for_update=True)
    _cdrom_id(ctx)
    body = await ctx.body("cdrom")
    file_node = body.child("file")
    file_id = None
    if file_node is not None:
        file_id = (file_node.attrs.get("id") or file_node.get_str("id") or "").strip() or None
    current = ctx.flag("current")
    job = await cdroms.update_cdrom(ctx.session, ctx.services.jobs, vm, file_id, ctx.user,
                                    current=current)
    vm_id = vm.id

    async def answer() -> Response:
        db = ctx.request.app.state.db
        if job is not None:
            await wait_for_job(db, job.id, timeout_s=CDROM_WAIT_S,
                               what="changing the CD of the VM")
        async with db.transaction() as session:
            fresh = await lookup.get(session, Vm, vm_id)
            return ctx.render("cdrom", cdrom_view(fresh, cdroms.cdrom_disk_id(
                fresh, current=current)))

    ctx.then = answer
    return Response(status_code=204)  # replaced by answer() once the transaction committed


# -- ISO images of a storage domain -------------------------------------------------------

def file_view(disk: Disk) -> Representation:
    return {"href": href("storagedomains", disk.storage_domain_id, "files", disk.id),
            "id": str(disk.id), "name": disk.name, "type": "iso",
            "storage_domain": ref("storagedomains", disk.storage_domain_id)}


@routes.get("/storagedomains/{sd_id}/files")
async def list_files(ctx: ApiContext) -> Response:
    domain = await lookup.get(ctx.session, StorageDomain, ctx.id_param("sd_id"))
    disks = (await ctx.session.execute(select(Disk).where(
        Disk.storage_domain_id == domain.id, Disk.content_type == cdroms.ISO)
        .order_by(Disk.name))).scalars()
    return ctx.render_list("files", "file", [file_view(d) for d in disks])


@routes.get("/storagedomains/{sd_id}/files/{file_id}")
async def get_file(ctx: ApiContext) -> Response:
    domain = await lookup.get(ctx.session, StorageDomain, ctx.id_param("sd_id"))
    disk = await ctx.session.get(Disk, ctx.id_param("file_id"))
    if disk is None or disk.storage_domain_id != domain.id or disk.content_type != cdroms.ISO:
        raise NotFound(f"storage domain {domain.name} has no ISO image "
                       f"{ctx.path_params['file_id']}")
    return ctx.render("file", file_view(disk))


# -- operating systems --------------------------------------------------------------------

def os_view(os_: OperatingSystem) -> Representation:
    return {"href": href("operatingsystems", os_.id), "id": str(os_.id), "name": os_.name,
            "description": os_.description, "architecture": "x86_64"}


@routes.get("/operatingsystems")
async def list_operating_systems(ctx: ApiContext) -> Response:
    # The SDK reads the list under oVirt's own (misspelt) root, `operation_systems`.
    return ctx.render_list("operation_systems", "operating_system",
                           [os_view(o) for o in OPERATING_SYSTEMS])


@routes.get("/operatingsystems/{os_id}")
async def get_operating_system(ctx: ApiContext) -> Response:
    raw = ctx.path_params["os_id"]
    found = BY_NAME.get(raw)
    if found is None:
        try:
            found = BY_ID.get(uuid.UUID(raw))
        except ValueError:
            found = None
    if found is None:
        raise NotFound(f"there is no operating system {raw}")
    return ctx.render("operating_system", os_view(found))
