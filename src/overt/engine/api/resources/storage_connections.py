"""/storageconnections and /storagedomains/{id}/storageconnections: the connection each
shared domain is reached by (an NFS export or an iSCSI portal and target), and those
added on their own; added, edited and removed as in oVirt
(overt.engine.services.storage_connections)."""

from __future__ import annotations

import uuid

from starlette.responses import Response

from overt.engine.api.context import ApiContext, href
from overt.engine.api.inventory_readers import read_storage_connection
from overt.engine.api.readers import ref_of
from overt.engine.api.resources.common import action_done
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.views import ref
from overt.engine.api.wire.render import Representation
from overt.engine.db.tables import StorageConnection, StorageDomain
from overt.engine.model.errors import NotFound
from overt.engine.model.status import StorageType
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref
from overt.engine.secrets import SecretBox
from overt.engine.services import storage_connections as connections
from overt.engine.services.storage_connections import Endpoint

routes = ApiRoutes()


def secret_box(ctx: ApiContext) -> SecretBox:
    """The box CHAP passwords are sealed with (the engine's own)."""
    box: SecretBox = ctx.services.secrets
    return box


def _rep(conn_id: uuid.UUID, endpoint: Endpoint, nfs_version: str | None = None,
         username: str | None = None) -> Representation:
    """A connection as oVirt shows it: the CHAP user name, never the password."""
    rep: Representation = {"href": href("storageconnections", conn_id), "id": str(conn_id),
                           "type": endpoint.type, "address": endpoint.address}
    if endpoint.type == StorageType.NFS:
        rep.update(path=endpoint.path, nfs_version=nfs_version or "auto")
    else:
        rep.update(port=endpoint.port, target=endpoint.target)
        if username:
            rep.update(username=username)
    return rep


def connection(domain: StorageDomain) -> Representation:
    """The connection a shared domain was made on."""
    return _rep(connections.domain_connection_id(domain), connections.domain_endpoint(domain),
                username=domain.chap_username)


def _of(found: StorageDomain | StorageConnection) -> Representation:
    if isinstance(found, StorageDomain):
        return connection(found)
    return _rep(found.id, connections.row_endpoint(found), found.nfs_version, found.username)


@routes.get("/storageconnections")
async def list_connections(ctx: ApiContext) -> Response:
    found = await connections.all_connections(ctx.session)
    reps: list[Representation] = []
    for conn_id, endpoint, row in found:
        if row is None:
            reps.append(_of(await connections.find(ctx.session, conn_id)))
        else:
            reps.append(_rep(conn_id, endpoint, row.nfs_version, row.username))
    return ctx.render_list("storage_connections", "storage_connection", reps)


@routes.get("/storageconnections/{conn_id}")
async def get_connection(ctx: ApiContext) -> Response:
    found = await connections.find(ctx.session, ctx.id_param("conn_id"))
    return ctx.render("storage_connection", _of(found))


@routes.post("/storageconnections")
async def add_connection(ctx: ApiContext) -> Response:
    row = await connections.add_connection(
        ctx.session, secret_box(ctx), read_storage_connection(await ctx.body("storage_connection")), ctx.user)
    return ctx.render("storage_connection", _of(row), status=201)


@routes.put("/storageconnections/{conn_id}")
async def update_connection(ctx: ApiContext) -> Response:
    found = await connections.update_connection(
        ctx.session, secret_box(ctx), ctx.id_param("conn_id"),
        read_storage_connection(await ctx.body("storage_connection")), ctx.user,
        force=ctx.flag("force"))
    return ctx.render("storage_connection", _of(found))


@routes.delete("/storageconnections/{conn_id}")
async def remove_connection(ctx: ApiContext) -> Response:
    await connections.remove_connection(ctx.session, ctx.id_param("conn_id"), ctx.user,
                                        host=_host_param(ctx))
    return action_done(ctx)


def _host_param(ctx: ApiContext) -> Ref | None:
    """`?host=` names the host to disconnect, by id or by name."""
    raw = ctx.request.query_params.get("host")
    if not raw:
        return None
    try:
        return Ref(id=uuid.UUID(raw), name=None)
    except ValueError:
        return Ref(id=None, name=raw)


async def _domain_reps(ctx: ApiContext, domain: StorageDomain) -> list[Representation]:
    if domain.storage_type not in (StorageType.NFS, StorageType.ISCSI):
        return []
    found = [connection(domain)] + [_of(r) for r in
                                    await connections.connections_of(ctx.session, domain)]
    for rep in found:
        rep["storage_domain"] = ref("storagedomains", domain.id)
    return found


@routes.get("/storagedomains/{sd_id}/storageconnections")
async def domain_connections(ctx: ApiContext) -> Response:
    domain = await lookup.get(ctx.session, StorageDomain, ctx.id_param("sd_id"))
    return ctx.render_list("storage_connections", "storage_connection",
                           await _domain_reps(ctx, domain))


@routes.get("/storagedomains/{sd_id}/storageconnections/{conn_id}")
async def domain_connection(ctx: ApiContext) -> Response:
    domain = await lookup.get(ctx.session, StorageDomain, ctx.id_param("sd_id"))
    wanted = str(ctx.id_param("conn_id"))
    for rep in await _domain_reps(ctx, domain):
        if rep["id"] == wanted:
            return ctx.render("storage_connection", rep)
    raise NotFound(f"Storage Domain {domain.name} has no storage connection {wanted}.")


@routes.post("/storagedomains/{sd_id}/storageconnections")
async def attach_connection(ctx: ApiContext) -> Response:
    sd_id = ctx.id_param("sd_id")
    row = await connections.attach_connection(
        ctx.session, sd_id, ref_of(await ctx.body("storage_connection")), ctx.user)
    rep = _of(row)
    rep["storage_domain"] = ref("storagedomains", sd_id)
    return ctx.render("storage_connection", rep, status=201)


@routes.delete("/storagedomains/{sd_id}/storageconnections/{conn_id}")
async def detach_connection(ctx: ApiContext) -> Response:
    await connections.detach_connection(ctx.session, ctx.id_param("sd_id"),
                                        ctx.id_param("conn_id"), ctx.user)
    return action_done(ctx)
