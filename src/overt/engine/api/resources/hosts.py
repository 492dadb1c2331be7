"""/hosts: hosts, their enrollment and maintenance actions."""

from __future__ import annotations

from sqlalchemy import func, select
from starlette.responses import Response

from overt.engine.api import list_xml, views
from overt.engine.api.context import ApiContext
from overt.engine.api.readers import ref_of
from overt.engine.api.resources.common import (
    MANY,
    action_done,
    action_params,
    list_records,
)
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.wire.parse import Node
from overt.engine.api.wire.render import Representation
from overt.engine.db.tables import Cluster, Host, Vm
from overt.engine.enrollment.broker_accounts import revoke_after_commit
from overt.engine.model.node_states import ON_HOST
from overt.engine.queries import lookup
from overt.engine.services import hosts as host_service

routes = ApiRoutes()


async def _view(ctx: ApiContext, host: Host) -> Representation:
    return (await _views(ctx, [host]))[0]


async def _views(ctx: ApiContext, hosts: list[Host]) -> list[Representation]:
    """Views of `hosts`; `all_content=true` adds what oVirt leaves out by default:
    `hosted_engine` (never configured: Overt's engine is not a VM on its hosts)."""
    all_content = ctx.strict_flag("all_content")
    counts = await _vm_counts(ctx, hosts)
    reps = []
    for host in hosts:
        rep = views.host(host, vm_count=counts.get(host.id, 0))
        if all_content:
            rep["hosted_engine"] = {"configured": False}
        reps.append(rep)
    return reps


async def _vm_counts(ctx: ApiContext, hosts: list[Host]) -> dict[object, int]:
    """VMs running on each of `hosts`, in one query whatever their number (for many, those
    of every host: a thousand ids bound in an IN cost more than counting them all)."""
    if not hosts:
        return {}
    stmt = select(Vm.host_id, func.count()).where(Vm.status.in_(ON_HOST))
    if len(hosts) <= MANY:
        stmt = stmt.where(Vm.host_id.in_([h.id for h in hosts]))
    rows = await ctx.session.execute(stmt.group_by(Vm.host_id))
    return {host_id: int(n) for host_id, n in rows.all()}


def _fingerprint(ssh: Node | None) -> str | None:
    """`ssh.fingerprint` (oVirt's field for the key the administrator confirmed)."""
    return ssh.get_str("fingerprint") if ssh is not None else None


@routes.get("/hosts")
async def list_hosts(ctx: ApiContext) -> Response:
    rows = await list_records(ctx, select(Host).join(Cluster, Cluster.id == Host.cluster_id)
                                .order_by(Host.name),
                                {"name": Host.name, "status": Host.status,
                                 "address": Host.address, "cluster": Cluster.name},
                              columns=list_xml.HOST_COLUMNS)
    if ctx.wants_json:
        return ctx.render_list("hosts", "host", await _views(ctx, rows))
    # XML (what the SDK asks for) straight from the rows: the same bytes as the views.
    all_content = ctx.strict_flag("all_content")
    return Response(list_xml.hosts_xml(rows, await _vm_counts(ctx, rows), all_content=all_content),
                    media_type="application/xml")


@routes.get("/hosts/{host_id}")
async def get_host(ctx: ApiContext) -> Response:
    host = await lookup.get(ctx.session, Host, ctx.id_param("host_id"))
    return ctx.render("host", await _view(ctx, host))


@routes.post("/hosts")
async def add_host(ctx: ApiContext) -> Response:
    node = await ctx.body("host")
    host, token = await host_service.add_host(
        ctx.session, ctx.services.jobs, name=node.get_str("name"),
        address=node.required_str("address"), port=node.get_int("port", minimum=1),
        cluster=ref_of(node.child("cluster")), user=ctx.user,
        fingerprint=_fingerprint(node.child("ssh")))
    view = await _view(ctx, host)
    view["enrollment_token"] = token  # shown once (the engine keeps its digest only)
    return ctx.render("host", view, status=201)


@routes.delete("/hosts/{host_id}")
async def remove_host(ctx: ApiContext) -> Response:
    host = await lookup.get(ctx.session, Host, ctx.id_param("host_id"))
    host_uuid = host.host_uuid
    await host_service.remove_host(ctx.session, host.id, ctx.user, force=ctx.flag("force"),
                              jobs=ctx.services.jobs)
    answer = action_done(ctx)
    revoke_after_commit(ctx, host_uuid, answer)
    return answer


@routes.post("/hosts/{host_id}/approve")
async def approve(ctx: ApiContext) -> Response:
    body = await ctx.request.body()
    cluster = fingerprint = None
    if body.strip():
        action = await ctx.body("action")
        cluster = ref_of(action.child("cluster"))
        host_node = action.child("host")
        fingerprint = _fingerprint(host_node.child("ssh") if host_node else None)
    await host_service.approve_host(ctx.session, ctx.id_param("host_id"), ctx.user,
                                    cluster=cluster, fingerprint=fingerprint)
    return action_done(ctx)


@routes.post("/hosts/{host_id}/install")
async def install(ctx: ApiContext) -> Response:
    """oVirt's (re)install: the SDK may send credentials or a deploy flag, which an Overt
    node does not need (the engine enrolls its agent over its enrollment endpoints)."""
    await action_params(ctx)  # an empty body is allowed; what is sent must parse
    correlation = ctx.request.headers.get("correlation-id") or ctx.request.query_params.get(
        "correlation_id")
    job = await host_service.install_host(ctx.session, ctx.services.jobs,
                                          ctx.id_param("host_id"), ctx.user,
                                          correlation_id=correlation)
    return action_done(ctx, job)


@routes.post("/hosts/{host_id}/deactivate")
async def deactivate(ctx: ApiContext) -> Response:
    """oVirt's maintenance: a host running VMs answers with the job that drains it."""
    await action_params(ctx)  # an empty body is allowed; what is sent must parse
    correlation = ctx.request.headers.get("correlation-id") or ctx.request.query_params.get(
        "correlation_id")
    job = await host_service.deactivate_host(ctx.session, ctx.services.jobs,
                                             ctx.id_param("host_id"), ctx.user,
                                             correlation_id=correlation)
    return action_done(ctx, job)


@routes.post("/hosts/{host_id}/activate")
async def activate(ctx: ApiContext) -> Response:
    await host_service.activate_host(ctx.session, ctx.id_param("host_id"), ctx.user,
                                     ctx.services.jobs)
    ctx.services.monitor_wakeup()
    return action_done(ctx)
