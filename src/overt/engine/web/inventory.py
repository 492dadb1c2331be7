"""The portal's forms to add, change and remove data centers, clusters and networks (through
the same service functions the API uses; a refusal is shown on the form that caused it)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from overt.engine.db.tables import Cluster, DataCenter, Network
from overt.engine.model.errors import OvertError
from overt.engine.model.fencing_policy import FencingPolicy
from overt.engine.queries import lookup
from overt.engine.services import clusters, datacenters, networks
from overt.engine.web import inventory_fields as f
from overt.engine.web.context import WebContext, page

Values = dict[str, str | list[str]]


@dataclass(frozen=True)
class Kind:
    """One kind of inventory object as the portal's forms see it."""

    path: str  # /datacenters
    nav: str
    title: str  # "data center"
    model: type[Any]
    fields: Callable[[list[DataCenter], bool], list[f.FormField]]
    values: Callable[[Any], Values]
    add: Callable[[AsyncSession, Values, Any], Awaitable[Any]]
    update: Callable[[AsyncSession, uuid.UUID, Values, Any], Awaitable[Any]]
    remove: Callable[[AsyncSession, uuid.UUID, Any], Awaitable[None]]
    defaults: Values


KINDS = {
    "datacenters": Kind(
        "/datacenters", "datacenters", "data center", DataCenter,
        lambda dcs, editing: f.data_center_fields(), f.data_center_values,
        lambda s, v, u: datacenters.add_data_center(s, f.read_data_center(v), u),
        lambda s, i, v, u: datacenters.update_data_center(s, i, f.read_data_center(v), u),
        datacenters.remove_data_center, {"name": "", "description": "", "local": ""}),
    "clusters": Kind(
        "/clusters", "clusters", "cluster", Cluster,
        lambda dcs, editing: f.cluster_fields(dcs), f.cluster_values,
        lambda s, v, u: clusters.add_cluster(s, f.read_cluster(v, editing=False), u),
        lambda s, i, v, u: clusters.update_cluster(s, i, f.read_cluster(v, editing=True), u),
        clusters.remove_cluster,
        {"name": "", "description": "", "data_center": "", "overcommit": "100",
         **f.fencing_values(FencingPolicy())}),
    "networks": Kind(
        "/networks", "networks", "network", Network,
        lambda dcs, editing: f.network_fields(dcs, editing=editing), f.network_values,
        lambda s, v, u: networks.add_network(s, f.read_network(v, editing=False), u),
        lambda s, i, v, u: networks.update_network(s, i, f.read_network(v, editing=True), u),
        networks.remove_network,
        {"name": "", "description": "", "data_center": "", "vlan": "", "mtu": "",
         "usages": ["vm"]}),
}


def _kind(ctx: WebContext) -> Kind:
    return KINDS[ctx.request.url.path.split("/")[1]]


async def _form_values(ctx: WebContext) -> Values:
    form = await ctx.request.form()
    values: Values = {}
    for key in form:
        items = [v for v in form.getlist(key) if isinstance(v, str)]
        values[key] = items if key == "usages" else (items[0] if items else "")
    return values


async def _render_form(ctx: WebContext, session: AsyncSession, kind: Kind, values: Values,
                       obj: Any = None, error: str | None = None, status: int = 200) -> Response:
    dcs = list((await session.execute(select(DataCenter).order_by(DataCenter.name))).scalars())
    return ctx.render("inventory_form.html", status, nav=kind.nav, kind=kind, obj=obj,
                      fields=kind.fields(dcs, obj is not None), values=values, error=error)


def _show_error(ctx: WebContext, kind: Kind, values: Values, obj_id: uuid.UUID | None
                ) -> Callable[[OvertError], Awaitable[Response]]:
    """Show the form again, as the user filled it, with the reason it was refused."""
    async def show(exc: OvertError) -> Response:
        async with ctx.request.app.state.db.transaction() as session:
            obj = await session.get(kind.model, obj_id) if obj_id is not None else None
            return await _render_form(ctx, session, kind, values, obj,
                                      f"{exc.reason}: {exc.detail}", exc.status)
    return show


@page
async def new_form(ctx: WebContext) -> Response:
    kind = _kind(ctx)
    values = dict(kind.defaults)
    if "data_center" in values:
        default = await lookup.by_name(ctx.session, DataCenter, "Default")
        values["data_center"] = str(default.id) if default else ""
    return await _render_form(ctx, ctx.session, kind, values)


@page
async def create(ctx: WebContext) -> Response:
    kind = _kind(ctx)
    # An unchecked checkbox is not sent: it is off, whatever its default.
    values = {**kind.defaults, "local": "", **dict.fromkeys(f.FENCING_CHECKBOXES, ""),
              **await _form_values(ctx)}
    if kind.path == "/networks" and "usages" not in await ctx.request.form():
        values["usages"] = []
    ctx.on_error = _show_error(ctx, kind, values, None)
    await kind.add(ctx.session, values, ctx.user)
    return RedirectResponse(kind.path, status_code=303)


@page
async def edit_form(ctx: WebContext) -> Response:
    kind = _kind(ctx)
    obj = await lookup.get(ctx.session, kind.model, ctx.id_param("obj_id"))
    return await _render_form(ctx, ctx.session, kind, kind.values(obj), obj)


@page
async def update(ctx: WebContext) -> Response:
    kind = _kind(ctx)
    obj_id = ctx.id_param("obj_id")
    values: Values = {"local": "", "usages": [], **dict.fromkeys(f.FENCING_CHECKBOXES, ""),
                      **await _form_values(ctx)}
    ctx.on_error = _show_error(ctx, kind, values, obj_id)
    await kind.update(ctx.session, obj_id, values, ctx.user)
    return RedirectResponse(kind.path, status_code=303)


@page
async def remove(ctx: WebContext) -> Response:
    """Removing asks first; a refusal is shown on the confirmation page."""
    kind = _kind(ctx)
    obj = await lookup.get(ctx.session, kind.model, ctx.id_param("obj_id"))
    form = await ctx.form()
    if form.get("confirmed") != "yes":
        return ctx.render("inventory_confirm.html", nav=kind.nav, kind=kind, obj=obj, error=None)
    name, obj_id = obj.name, obj.id

    async def show(exc: OvertError) -> Response:
        async with ctx.request.app.state.db.transaction() as session:
            again = await session.get(kind.model, obj_id)
            return ctx.render("inventory_confirm.html", exc.status, nav=kind.nav, kind=kind,
                              obj=again or {"name": name, "id": obj_id},
                              error=f"{exc.reason}: {exc.detail}")
    ctx.on_error = show
    await kind.remove(ctx.session, obj_id, ctx.user)
    return RedirectResponse(kind.path, status_code=303)


ROUTES = [route for kind in KINDS.values() for route in (
    Route(f"{kind.path}/new", new_form),
    Route(kind.path, create, methods=["POST"]),
    Route(f"{kind.path}/{{obj_id}}/edit", edit_form),
    Route(f"{kind.path}/{{obj_id}}/remove", remove, methods=["POST"]),
    Route(f"{kind.path}/{{obj_id}}", update, methods=["POST"]),
)]
