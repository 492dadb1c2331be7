"""The portal's forms to add, change and remove objects of a kind (data centers, clusters,
networks here; provisioning profiles in `provisioning`): one mechanism, each kind saying
its fields and service calls (the same service functions the API uses); a refusal is shown
on the form that caused it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
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
class FormScope:
    """What a kind's form fields are made from: the request's transaction, the engine's
    services (e.g. the node images it serves) and whether an object is being edited."""

    session: AsyncSession
    services: Any  # overt.engine.api.app.ApiServices (typed loosely: no import cycle)
    editing: bool


Fields = Callable[[FormScope], Awaitable[list[f.FormField]]]


@dataclass(frozen=True)
class Kind:
    """One kind of object as the portal's New, Edit and Remove forms see it; its service
    calls get the engine's services too (`services`, as the API's do)."""

    path: str  # /datacenters
    nav: str
    title: str  # "data center"
    model: type[Any]
    fields: Fields
    values: Callable[[Any], Values]
    add: Callable[[AsyncSession, Any, Values, Any], Awaitable[Any]]
    update: Callable[[AsyncSession, Any, uuid.UUID, Values, Any], Awaitable[Any]]
    remove: Callable[[AsyncSession, uuid.UUID, Any], Awaitable[None]]
    defaults: Values
    # What a field the browser does not send means (an unchecked checkbox: off).
    unsent: Values = field(default_factory=dict)
    lists: frozenset[str] = frozenset()  # fields with several values (checkboxes)


def text(values: Values, key: str) -> str:
    """One field's text (the first of several)."""
    value = values.get(key, "")
    return value if isinstance(value, str) else (value[0] if value else "")


def with_data_centers(make: Callable[[list[DataCenter], bool], list[f.FormField]]) -> Fields:
    """Fields made from the data centers (their choices) and whether editing."""
    async def fields(scope: FormScope) -> list[f.FormField]:
        dcs = list((await scope.session.execute(select(DataCenter).order_by(DataCenter.name))
                    ).scalars())
        return make(dcs, scope.editing)
    return fields


KINDS = {
    "datacenters": Kind(
        "/datacenters", "datacenters", "data center", DataCenter,
        with_data_centers(lambda dcs, editing: f.data_center_fields()), f.data_center_values,
        lambda s, _, v, u: datacenters.add_data_center(s, f.read_data_center(v), u),
        lambda s, _, i, v, u: datacenters.update_data_center(s, i, f.read_data_center(v), u),
        datacenters.remove_data_center, {"name": "", "description": "", "local": ""},
        unsent={"local": ""}),
    "clusters": Kind(
        "/clusters", "clusters", "cluster", Cluster,
        with_data_centers(lambda dcs, editing: f.cluster_fields(dcs)), f.cluster_values,
        lambda s, _, v, u: clusters.add_cluster(s, f.read_cluster(v, editing=False), u),
        lambda s, _, i, v, u: clusters.update_cluster(s, i, f.read_cluster(v, editing=True), u),
        clusters.remove_cluster,
        {"name": "", "description": "", "data_center": "", "overcommit": "100",
         **f.fencing_values(FencingPolicy())},
        unsent=dict.fromkeys(f.FENCING_CHECKBOXES, "")),
    "networks": Kind(
        "/networks", "networks", "network", Network,
        with_data_centers(lambda dcs, editing: f.network_fields(dcs, editing=editing)),
        f.network_values,
        lambda s, _, v, u: networks.add_network(s, f.read_network(v, editing=False), u),
        lambda s, _, i, v, u: networks.update_network(s, i, f.read_network(v, editing=True), u),
        networks.remove_network,
        {"name": "", "description": "", "data_center": "", "vlan": "", "mtu": "",
         "usages": ["vm"]},
        unsent={"usages": []}, lists=frozenset({"usages"})),
}


async def _form_values(ctx: WebContext, kind: Kind) -> Values:
    form = await ctx.request.form()
    values: Values = {}
    for key in form:
        items = [v for v in form.getlist(key) if isinstance(v, str)]
        values[key] = items if key in kind.lists else (items[0] if items else "")
    return values


async def _render_form(ctx: WebContext, session: AsyncSession, kind: Kind, values: Values,
                       obj: Any = None, error: str | None = None, status: int = 200) -> Response:
    fields = await kind.fields(FormScope(session, ctx.services, obj is not None))
    return ctx.render("inventory_form.html", status, nav=kind.nav, kind=kind, obj=obj,
                      fields=fields, values=values, error=error)


def _show_error(ctx: WebContext, kind: Kind, values: Values, obj_id: uuid.UUID | None
                ) -> Callable[[OvertError], Awaitable[Response]]:
    """Show the form again, as the user filled it, with the reason it was refused."""
    async def show(exc: OvertError) -> Response:
        async with ctx.request.app.state.db.transaction() as session:
            obj = await session.get(kind.model, obj_id) if obj_id is not None else None
            return await _render_form(ctx, session, kind, values, obj,
                                      f"{exc.reason}: {exc.detail}", exc.status)
    return show


async def new_form(ctx: WebContext, kind: Kind) -> Response:
    values = dict(kind.defaults)
    if "data_center" in values:
        default = await lookup.by_name(ctx.session, DataCenter, "Default")
        values["data_center"] = str(default.id) if default else ""
    return await _render_form(ctx, ctx.session, kind, values)


async def create(ctx: WebContext, kind: Kind) -> Response:
    values = {**kind.defaults, **kind.unsent, **await _form_values(ctx, kind)}
    ctx.on_error = _show_error(ctx, kind, values, None)
    await kind.add(ctx.session, ctx.services, values, ctx.user)
    return RedirectResponse(kind.path, status_code=303)


async def edit_form(ctx: WebContext, kind: Kind) -> Response:
    obj = await lookup.get(ctx.session, kind.model, ctx.id_param("obj_id"))
    return await _render_form(ctx, ctx.session, kind, kind.values(obj), obj)


async def update(ctx: WebContext, kind: Kind) -> Response:
    obj_id = ctx.id_param("obj_id")
    values = {**kind.unsent, **await _form_values(ctx, kind)}
    ctx.on_error = _show_error(ctx, kind, values, obj_id)
    await kind.update(ctx.session, ctx.services, obj_id, values, ctx.user)
    return RedirectResponse(kind.path, status_code=303)


async def remove(ctx: WebContext, kind: Kind) -> Response:
    """Removing asks first; a refusal is shown on the confirmation page."""
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


KindHandler = Callable[[WebContext, Kind], Awaitable[Response]]


def _bound(handler: KindHandler, kind: Kind) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(ctx: WebContext) -> Response:
        return await handler(ctx, kind)
    endpoint.__name__ = endpoint.__qualname__ = f"{handler.__name__}_{kind.nav}"
    return page(endpoint)


def form_routes(kind: Kind) -> list[Route]:
    """New, Add, Edit, Save and Remove of one kind, under its path."""
    return [
        Route(f"{kind.path}/new", _bound(new_form, kind)),
        Route(kind.path, _bound(create, kind), methods=["POST"]),
        Route(f"{kind.path}/{{obj_id}}/edit", _bound(edit_form, kind)),
        Route(f"{kind.path}/{{obj_id}}/remove", _bound(remove, kind), methods=["POST"]),
        Route(f"{kind.path}/{{obj_id}}", _bound(update, kind), methods=["POST"]),
    ]


ROUTES = [route for kind in KINDS.values() for route in form_routes(kind)]
