"""/hosts/{id}/iscsidiscover, /discoveriscsi, /iscsilogin and /hosts/{id}/storage: oVirt's
iSCSI discovery, login and LUN list, each a job on the host the API waits for
(`services.host_iscsi`); and /iscsilogout, which forgets a login at once (no node keeps a
session to end)."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.responses import Response

from overt.engine.api import views
from overt.engine.api.context import API_PREFIX, ApiContext
from overt.engine.api.resources.storage_connections import secret_box
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.wire.parse import Node
from overt.engine.api.wire.render import Representation
from overt.engine.db.tables import Host
from overt.engine.model.errors import NotFound
from overt.engine.queries import lookup
from overt.engine.services import host_iscsi
from overt.engine.services.host_iscsi import IscsiDetailsInput, ListedLun
from overt.engine.services.jobs import wait_for_job

routes = ApiRoutes()


def read_iscsi(node: Node | None) -> IscsiDetailsInput | None:
    if node is None:
        return None
    return IscsiDetailsInput(address=node.get_str("address"), port=node.get_int("port"),
                             target=node.get_str("target"), username=node.get_str("username"),
                             password=node.get_str("password"))


async def _details(ctx: ApiContext) -> IscsiDetailsInput | None:
    body = await ctx.request.body()
    if not body.strip():
        return None
    return read_iscsi((await ctx.body("action")).child("iscsi"))


async def _run(ctx: ApiContext, op: str, details: IscsiDetailsInput | None,
               what: str) -> Any:
    """Submit the host's job; the caller's `ctx.then` waits for it with `wait`."""
    job = await host_iscsi.submit(ctx.session, ctx.services.jobs, secret_box(ctx),
                                  ctx.id_param("host_id"), op, details, ctx.user)
    job_id, db = job.id, ctx.request.app.state.db

    async def wait() -> dict[str, Any]:
        done = await wait_for_job(db, job_id, timeout_s=host_iscsi.WAIT_S, what=what)
        return dict(done.result or {})
    return job_id, wait


@routes.post("/hosts/{host_id}/iscsidiscover")
async def iscsi_discover(ctx: ApiContext) -> Response:
    """oVirt's deprecated discovery: the targets' names (`<iscsi_targets>`)."""
    job_id, wait = await _run(ctx, "discover", await _details(ctx), "iSCSI discovery")

    async def answer() -> Response:
        targets = (await wait())["targets"]
        names = list(dict.fromkeys(t["target"] for t in targets))
        return ctx.render("action", {"iscsi_targets": {"iscsi_target": names},
                                     "job": views.ref("jobs", job_id), "status": "complete"})
    ctx.then = answer
    return ctx.render("action", {"status": "pending"})


@routes.post("/hosts/{host_id}/discoveriscsi")
async def discover_iscsi(ctx: ApiContext) -> Response:
    """oVirt 4.4.6's discovery: each target with its portal (`<discovered_targets>`)."""
    job_id, wait = await _run(ctx, "discover", await _details(ctx), "iSCSI discovery")

    async def answer() -> Response:
        targets = (await wait())["targets"]
        return ctx.render("action", {"discovered_targets": {"iscsi_details": [
            {"address": t["address"], "port": t["port"], "portal": t["portal"],
             "target": t["target"]} for t in targets]},
            "job": views.ref("jobs", job_id), "status": "complete"})
    ctx.then = answer
    return ctx.render("action", {"status": "pending"})


@routes.post("/hosts/{host_id}/iscsilogin")
async def iscsi_login(ctx: ApiContext) -> Response:
    """The host logs in to the target (its LUNs listed, which a wrong password fails) and
    remembers the login for its LUN list."""
    job_id, wait = await _run(ctx, "login", await _details(ctx), "iSCSI login")

    async def answer() -> Response:
        await wait()
        return ctx.render("action", {"job": views.ref("jobs", job_id), "status": "complete"})
    ctx.then = answer
    return ctx.render("action", {"status": "pending"})


@routes.post("/hosts/{host_id}/iscsilogout")
async def iscsi_logout(ctx: ApiContext) -> Response:
    """The host forgets its login to the target: `<action><iscsi>` with `address`, `target`
    and optionally `port`, as iscsilogin takes them (oVirt's model up to 4.6 has no logout
    action; this is the one shape its `Action` can carry, `iscsi`). Refused (409) while
    the target is in use on the host."""
    details = await _details(ctx)
    await host_iscsi.logout(ctx.session, ctx.id_param("host_id"), details)
    return ctx.render("action", {"status": "complete"})


def _lun_view(lun: ListedLun) -> Representation:
    return {"id": lun.scsi_id, "address": lun.address, "port": lun.port,
            "target": lun.target, "lun_mapping": lun.lun, "size": lun.size_bytes,
            "serial": lun.serial, "vendor_id": lun.vendor, "product_id": lun.product,
            "paths": 1, "status": "used" if lun.used_by else "free",
            "username": lun.username}


def _storage_view(host_id: str, lun: ListedLun) -> Representation:
    return {"href": f"{API_PREFIX}/hosts/{host_id}/storage/{lun.scsi_id}",
            "id": lun.scsi_id, "type": "iscsi",
            "logical_units": {"logical_unit": [_lun_view(lun)]},
            "host": views.ref("hosts", uuid.UUID(host_id))}


async def _listed(ctx: ApiContext) -> tuple[str, Any] | None:
    """The LUN list's waiter, or None for a host that logged in to no target."""
    host = await lookup.get(ctx.session, Host, ctx.id_param("host_id"))
    if not host.iscsi_logins:
        return None
    _job_id, wait = await _run(ctx, "luns", None, "Listing the host's iSCSI LUNs")
    return str(host.id), wait


@routes.get("/hosts/{host_id}/storage")
async def list_host_storage(ctx: ApiContext) -> Response:
    """The LUNs of every target the host logged in to (asked of the host now)."""
    listed = await _listed(ctx)
    if listed is None:
        return ctx.render_list("host_storages", "host_storage", [])
    host_id, wait = listed
    db = ctx.request.app.state.db

    async def answer() -> Response:
        result = await wait()
        async with db.transaction() as session:
            luns = await host_iscsi.listed_luns(session, result)
        return ctx.render_list("host_storages", "host_storage",
                               [_storage_view(host_id, lun) for lun in luns])
    ctx.then = answer
    return ctx.render("action", {"status": "pending"})


@routes.get("/hosts/{host_id}/storage/{lun_id}")
async def get_host_storage(ctx: ApiContext) -> Response:
    listed = await _listed(ctx)
    lun_id = ctx.path_params["lun_id"]
    if listed is None:
        raise NotFound(f"host storage {lun_id} not found")
    host_id, wait = listed
    db = ctx.request.app.state.db

    async def answer() -> Response:
        result = await wait()
        async with db.transaction() as session:
            luns = await host_iscsi.listed_luns(session, result)
        for lun in luns:
            if lun.scsi_id == lun_id:
                return ctx.render("host_storage", _storage_view(host_id, lun))
        raise NotFound(f"host storage {lun_id} not found")
    ctx.then = answer
    return ctx.render("action", {"status": "pending"})
