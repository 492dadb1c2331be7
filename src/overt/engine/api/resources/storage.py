"""/storagedomains and /disks."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from starlette.responses import Response

from overt.engine.api import views
from overt.engine.api.context import ApiContext
from overt.engine.api.readers import read_disk, ref_of
from overt.engine.api.resources.common import action_done, list_rows
from overt.engine.api.routing import ApiRoutes
from overt.engine.db.tables import Cluster, Disk, Host, StorageDomain
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.model.status import StorageDomainStatus, StorageDomainType, StorageType
from overt.engine.services import devices, lookup

routes = ApiRoutes()


@routes.get("/storagedomains")
async def list_domains(ctx: ApiContext) -> Response:
    rows = await list_rows(ctx, select(StorageDomain).order_by(StorageDomain.name),
                           {"name": StorageDomain.name, "status": StorageDomain.status,
                            "type": StorageDomain.type})
    return ctx.render_list("storage_domains", "storage_domain",
                           [views.storage_domain(r) for r in rows])


@routes.get("/storagedomains/{sd_id}")
async def get_domain(ctx: ApiContext) -> Response:
    domain = await lookup.get(ctx.session, StorageDomain, ctx.id_param("sd_id"))
    return ctx.render("storage_domain", views.storage_domain(domain))


@routes.post("/storagedomains")
async def add_domain(ctx: ApiContext) -> Response:
    """A local storage domain: a directory on one host (NFS and iSCSI come later)."""
    node = await ctx.body("storage_domain")
    name = node.required_str("name")
    if await lookup.name_taken(ctx.session, StorageDomain, name):
        raise Conflict(f"Cannot add Storage. The name {name!r} is already in use.")
    kind = node.get_enum("type", StorageDomainType) or StorageDomainType.DATA
    storage = node.child("storage")
    if storage is None:
        raise InvalidInput("storage_domain.storage is required (type and path)")
    storage_type = storage.get_enum("type", StorageType)
    if storage_type is not StorageType.LOCALFS:
        raise InvalidInput("only localfs storage domains can be added for now")
    path = storage.required_str("path")
    if not path.startswith("/"):
        raise InvalidInput(f"storage_domain.storage.path must be absolute, not {path!r}")
    host = await lookup.resolve(ctx.session, Host, ref_of(node.child("host")),
                                "storage_domain.host")
    cluster = await lookup.get(ctx.session, Cluster, host.cluster_id)
    domain = StorageDomain(id=uuid.uuid4(), name=name, description=node.get_str("description") or "",
                           type=kind.value, storage_type=storage_type.value, path=path,
                           host_id=host.id, data_center_id=cluster.data_center_id,
                           status=StorageDomainStatus.ACTIVE.value)
    ctx.session.add(domain)
    await ctx.session.flush()
    return ctx.render("storage_domain", views.storage_domain(domain), status=201)


@routes.get("/storagedomains/{sd_id}/disks")
async def domain_disks(ctx: ApiContext) -> Response:
    domain = await lookup.get(ctx.session, StorageDomain, ctx.id_param("sd_id"))
    rows = await list_rows(ctx, select(Disk).where(Disk.storage_domain_id == domain.id)
                           .order_by(Disk.name), {"name": Disk.name, "status": Disk.status})
    return ctx.render_list("disks", "disk", [views.disk(r) for r in rows])


@routes.get("/disks")
async def list_disks(ctx: ApiContext) -> Response:
    rows = await list_rows(ctx, select(Disk).order_by(Disk.name),
                           {"name": Disk.name, "alias": Disk.name, "status": Disk.status,
                            "id": Disk.id})
    return ctx.render_list("disks", "disk", [views.disk(r) for r in rows])


@routes.get("/disks/{disk_id}")
async def get_disk(ctx: ApiContext) -> Response:
    return ctx.render("disk", views.disk(await lookup.get(ctx.session, Disk,
                                                           ctx.id_param("disk_id"))))


@routes.post("/disks")
async def add_disk(ctx: ApiContext) -> Response:
    disk = await devices.add_disk(ctx.session, ctx.services.jobs,
                                  read_disk(await ctx.body("disk")), ctx.user)
    return ctx.render("disk", views.disk(disk), status=201)


@routes.delete("/disks/{disk_id}")
async def remove_disk(ctx: ApiContext) -> Response:
    disk = await lookup.get(ctx.session, Disk, ctx.id_param("disk_id"))
    await devices.remove_disk_job(ctx.session, ctx.services.jobs, disk, ctx.user)
    return action_done(ctx)
