"""Hosts' power management: `power_management` on a host, /hosts/{id}/fenceagents, and the
`fence` action (whose answer carries the power status, as oVirt's does)."""

from __future__ import annotations

from sqlalchemy import select
from starlette.responses import Response

from overt.engine.api import views
from overt.engine.api.context import ApiContext
from overt.engine.api.resources.common import action_done, action_params
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.wire.parse import Node
from overt.engine.db.tables import FenceAgent, Host
from overt.engine.model.errors import InvalidInput, Unavailable
from overt.engine.queries import lookup
from overt.engine.secrets import Secret, SecretBox
from overt.engine.services import power_management as pm
from overt.engine.services.jobs import wait_for_job

routes = ApiRoutes()
# A fence runs the agent twice at most (the action, then status), each within its timeout.
FENCE_WAIT_S = 300.0


def _box(ctx: ApiContext) -> SecretBox:
    box: SecretBox | None = ctx.services.secrets
    if box is None:
        raise Unavailable("this engine keeps no secrets store: power management is unavailable")
    return box


def _options(node: Node) -> dict[str, str] | None:
    if not node.has("options"):
        return None
    options: dict[str, str] = {}
    for option in node.items("options", "option"):
        options[option.required_str("name")] = option.get_str("value") or ""
    return options


def _password(node: Node) -> Secret | None:
    value = node.get_str("password")
    return Secret(value) if value is not None else None


@routes.put("/hosts/{host_id}")
async def update_host(ctx: ApiContext) -> Response:
    """oVirt's host update; Overt changes `power_management.enabled` and
    `power_management.kdump_detection` through it and refuses the rest rather than ignore
    it."""
    node = await ctx.body("host")
    others = sorted({child.tag for child in node.children} - {"power_management", "id", "href"})
    if others:
        raise InvalidInput(f"host {', '.join(others)} cannot be updated; an update may change "
                           "power_management.enabled and kdump_detection only")
    power = node.child("power_management")
    host_id = ctx.id_param("host_id")
    if power is not None and power.get_bool("enabled") is not None:
        await pm.set_enabled(ctx.session, host_id, bool(power.get_bool("enabled")), ctx.user)
    if power is not None and power.get_bool("kdump_detection") is not None:
        await pm.set_kdump_detection(ctx.session, host_id,
                                     bool(power.get_bool("kdump_detection")), ctx.user)
    host = await lookup.get(ctx.session, Host, host_id)
    return ctx.render("host", views.host(host))


@routes.get("/hosts/{host_id}/fenceagents")
async def list_agents(ctx: ApiContext) -> Response:
    host = await lookup.get(ctx.session, Host, ctx.id_param("host_id"))
    rows = (await ctx.session.execute(select(FenceAgent).where(FenceAgent.host_id == host.id)
                                      .order_by(FenceAgent.order))).scalars()
    return ctx.render_list("agents", "agent", [views.fence_agent(a) for a in rows])


@routes.post("/hosts/{host_id}/fenceagents")
async def add_agent(ctx: ApiContext) -> Response:
    node = await ctx.body("agent")
    agent = await pm.add_agent(
        ctx.session, _box(ctx), ctx.id_param("host_id"), ctx.user,
        agent_type=node.required_str("type"), address=node.required_str("address"),
        port=node.get_int("port", minimum=1), username=node.get_str("username") or "",
        password=_password(node) or Secret(""), options=_options(node) or {},
        order=node.get_int("order", minimum=1))
    await ctx.session.flush()
    return ctx.render("agent", views.fence_agent(agent), status=201)


@routes.get("/hosts/{host_id}/fenceagents/{agent_id}")
async def get_agent(ctx: ApiContext) -> Response:
    agent = await pm.get_agent(ctx.session, ctx.id_param("host_id"), ctx.id_param("agent_id"))
    return ctx.render("agent", views.fence_agent(agent))


@routes.put("/hosts/{host_id}/fenceagents/{agent_id}")
async def update_agent(ctx: ApiContext) -> Response:
    node = await ctx.body("agent")
    agent = await pm.update_agent(
        ctx.session, _box(ctx), ctx.id_param("host_id"), ctx.id_param("agent_id"), ctx.user,
        agent_type=node.get_str("type"), address=node.get_str("address"),
        port=node.get_int("port", minimum=1), username=node.get_str("username"),
        password=_password(node), options=_options(node), order=node.get_int("order", minimum=1))
    return ctx.render("agent", views.fence_agent(agent))


@routes.delete("/hosts/{host_id}/fenceagents/{agent_id}")
async def remove_agent(ctx: ApiContext) -> Response:
    await pm.remove_agent(ctx.session, ctx.id_param("host_id"), ctx.id_param("agent_id"),
                          ctx.user)
    return action_done(ctx)


@routes.post("/hosts/{host_id}/fence")
async def fence(ctx: ApiContext) -> Response:
    """Run the fence job and answer when it ends, with the power status (a failed job's
    reason becomes a 409 fault)."""
    params = await action_params(ctx)
    fence_type = params.get("fence_type")
    if not fence_type:
        raise InvalidInput(f"fence_type is required: one of {', '.join(pm.FENCE_TYPES)}")
    correlation = ctx.request.headers.get("correlation-id") or ctx.request.query_params.get(
        "correlation_id")
    job = await pm.fence(ctx.session, ctx.services.jobs, ctx.id_param("host_id"), fence_type,
                         ctx.user, correlation_id=correlation)
    job_id, db = job.id, ctx.request.app.state.db

    async def answer() -> Response:
        done = await wait_for_job(db, job_id, timeout_s=FENCE_WAIT_S,
                                  what=f"Power management {fence_type}")
        return ctx.render("action", {"power_management": {"status": done.result.get("status")},
                                     "job": views.ref("jobs", job_id), "status": "complete"})
    ctx.then = answer
    return ctx.render("action", {"status": "pending"})
