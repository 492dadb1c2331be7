"""/storageconnections and /storagedomains/{id}/storageconnections: the connection each
shared domain is reached by (an NFS export or an iSCSI target and LUN), read only.

A connection here is made with its domain and goes with it, so its id is derived from
the domain's; free-standing connections (added, edited or removed on their own, as
oVirt allows) are not kept."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from starlette.responses import Response

from overt.engine.api.context import ApiContext, href
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.views import ref
from overt.engine.api.wire.render import Representation
from overt.engine.db.tables import StorageDomain
from overt.engine.model.errors import NotFound
from overt.engine.model.status import StorageType
from overt.engine.queries import lookup

routes = ApiRoutes()
_CONNECTIONS = uuid.UUID("5d0c7a52-8f0e-4a8e-9b7e-3c6f1e2a9d41")  # namespace of their ids
_SHARED = (StorageType.NFS.value, StorageType.ISCSI.value)
ISCSI_PORT = 3260


def connection_id(domain: StorageDomain) -> uuid.UUID:
    return uuid.uuid5(_CONNECTIONS, str(domain.id))


def connection(domain: StorageDomain) -> Representation:
    base = href("storageconnections", connection_id(domain))
    rep: Representation = {"href": base, "id": str(connection_id(domain)),
                           "type": domain.storage_type}
    if domain.storage_type == StorageType.NFS:
        rep.update(address=domain.address, path=domain.path, nfs_version="auto")
    else:
        host, _, port = (domain.address or "").partition(":")
        target, _, _lun = domain.path.rpartition("/")
        rep.update(address=host, port=int(port) if port.isdigit() else ISCSI_PORT,
                   target=target)
    return rep


async def _shared(ctx: ApiContext) -> list[StorageDomain]:
    return list((await ctx.session.execute(select(StorageDomain).where(
        StorageDomain.storage_type.in_(_SHARED)).order_by(StorageDomain.name))).scalars())


@routes.get("/storageconnections")
async def list_connections(ctx: ApiContext) -> Response:
    return ctx.render_list("storage_connections", "storage_connection",
                           [connection(d) for d in await _shared(ctx)])


@routes.get("/storageconnections/{conn_id}")
async def get_connection(ctx: ApiContext) -> Response:
    wanted = ctx.id_param("conn_id")
    for domain in await _shared(ctx):
        if connection_id(domain) == wanted:
            return ctx.render("storage_connection", connection(domain))
    raise NotFound(f"There is no storage connection with id {wanted}.")


@routes.get("/storagedomains/{sd_id}/storageconnections")
async def domain_connections(ctx: ApiContext) -> Response:
    domain = await lookup.get(ctx.session, StorageDomain, ctx.id_param("sd_id"))
    found = [connection(domain)] if domain.storage_type in _SHARED else []
    for rep in found:
        rep["storage_domain"] = ref("storagedomains", domain.id)
    return ctx.render_list("storage_connections", "storage_connection", found)
