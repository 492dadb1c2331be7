"""The portal's provisioning profiles: which node image a machine booting from a
provisioning network gets (by its MAC, or the default profile), with what kernel
arguments, and the cluster it joins. New, Edit and Remove go through the same service
functions as the API's /provisioningprofiles; a refusal is shown on the form."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from overt.engine.db.tables import Cluster, ProvisioningProfile
from overt.engine.model.errors import InvalidInput, OvertError
from overt.engine.provisioning.images import NodeImages
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref
from overt.engine.services import provisioning as service
from overt.engine.services.provisioning import ProfileInput
from overt.engine.web.context import WebContext, page
from overt.engine.web.inventory_fields import FormField

PATH = "/provisioningprofiles"
NAV = "provisioning"
EMPTY = {"name": "", "mac": "", "image": "", "kernel_args": "", "cluster": ""}


@dataclass(frozen=True)
class FormKind:
    """What the shared form and confirmation templates need to know of a kind."""

    path: str
    nav: str
    title: str


KIND = FormKind(PATH, NAV, "provisioning profile")


def fields(clusters: list[Cluster], images: list[str]) -> list[FormField]:
    return [
        FormField("name", "Name", required=True,
                  help="1-64 letters, digits, '.', '_' or '-'.",
                  attrs={"maxlength": "64", "pattern": r"[A-Za-z0-9][A-Za-z0-9._\-]*"}),
        FormField("mac", "MAC address",
                  help="The machine's boot MAC (aa:bb:cc:dd:ee:ff); empty: the default "
                  "profile, for every machine without a profile of its own.",
                  attrs={"maxlength": "17"}),
        FormField("image", "Node image", required=True,
                  help="A node image this engine serves (`overt node-image build`): "
                  + (", ".join(images) if images else "it has none yet") + ".",
                  options=[(name, name) for name in images]),
        FormField("kernel_args", "Kernel arguments", help="Added to the image's own; one line.",
                  attrs={"maxlength": "1024"}),
        FormField("cluster", "Cluster", kind="select",
                  options=[("", "Default (chosen by the engine)"),
                           *((str(c.id), c.name) for c in clusters)]),
    ]


def values_of(row: ProvisioningProfile) -> dict[str, str]:
    return {"name": row.name, "mac": row.mac or "", "image": row.image,
            "kernel_args": row.kernel_args or "",
            "cluster": str(row.cluster_id) if row.cluster_id else ""}


def read_form(form: dict[str, str]) -> ProfileInput:
    """The service's input from a submitted form: every field given (an empty MAC makes
    it the default profile; no cluster, none of its own)."""
    raw_cluster = form.get("cluster", "").strip()
    cluster = None
    if raw_cluster:
        try:
            cluster = Ref(id=uuid.UUID(raw_cluster))
        except ValueError:
            raise InvalidInput(f"cluster {raw_cluster[:40]!r} is not a cluster's id") from None
    return ProfileInput(name=form.get("name", "").strip(), mac=form.get("mac", "").strip(),
                        image=form.get("image", "").strip(),
                        kernel_args=form.get("kernel_args", ""), cluster=cluster,
                        clear_cluster=cluster is None)


async def _render_form(ctx: WebContext, session: AsyncSession, values: dict[str, str],
                       obj: ProvisioningProfile | None, error: str | None = None,
                       status: int = 200) -> Response:
    clusters = list((await session.execute(select(Cluster).order_by(Cluster.name))).scalars())
    images: NodeImages = ctx.services.node_images
    return ctx.render("inventory_form.html", status, nav=NAV, kind=KIND, obj=obj,
                      fields=fields(clusters, images.names()), values=values, error=error)


def _show_error(ctx: WebContext, values: dict[str, str], obj_id: uuid.UUID | None
                ) -> Callable[[OvertError], Awaitable[Response]]:
    """The form again, as the user filled it, with the reason it was refused."""
    async def show(exc: OvertError) -> Response:
        async with ctx.request.app.state.db.transaction() as session:
            obj = await session.get(ProvisioningProfile, obj_id) if obj_id else None
            return await _render_form(ctx, session, values, obj, f"{exc.reason}: {exc.detail}",
                                      exc.status)
    return show


async def _list_values(session: AsyncSession) -> dict[str, Any]:
    clusters = dict((await session.execute(select(Cluster.id, Cluster.name))).all())
    return {"profiles": await service.profiles(session), "clusters": clusters}


@page
async def profiles_page(ctx: WebContext) -> Response:
    images: NodeImages = ctx.services.node_images
    return ctx.render("provisioning_profiles.html", nav=NAV, images=images.names(),
                      **await _list_values(ctx.session))


@page
async def new_form(ctx: WebContext) -> Response:
    return await _render_form(ctx, ctx.session, dict(EMPTY), None)


@page
async def create(ctx: WebContext) -> Response:
    values = {**EMPTY, **await ctx.form()}
    ctx.on_error = _show_error(ctx, values, None)
    await service.add_profile(ctx.session, ctx.services.node_images, read_form(values), ctx.user)
    return RedirectResponse(PATH, status_code=303)


@page
async def edit_form(ctx: WebContext) -> Response:
    row = await service.get_profile(ctx.session, ctx.id_param("obj_id"))
    return await _render_form(ctx, ctx.session, values_of(row), row)


@page
async def update(ctx: WebContext) -> Response:
    obj_id = ctx.id_param("obj_id")
    values = {**EMPTY, **await ctx.form()}
    ctx.on_error = _show_error(ctx, values, obj_id)
    await service.update_profile(ctx.session, ctx.services.node_images, obj_id,
                                 read_form(values), ctx.user)
    return RedirectResponse(PATH, status_code=303)


@page
async def remove(ctx: WebContext) -> Response:
    """Removing asks first (its machines then get the default profile)."""
    row = await lookup.get(ctx.session, ProvisioningProfile, ctx.id_param("obj_id"))
    if (await ctx.form()).get("confirmed") != "yes":
        return ctx.render("inventory_confirm.html", nav=NAV, kind=KIND, obj=row, error=None)
    await service.remove_profile(ctx.session, row.id, ctx.user)
    return RedirectResponse(PATH, status_code=303)


ROUTES = [
    Route(PATH, profiles_page),
    Route(f"{PATH}/new", new_form),
    Route(PATH, create, methods=["POST"]),
    Route(f"{PATH}/{{obj_id}}/edit", edit_form),
    Route(f"{PATH}/{{obj_id}}/remove", remove, methods=["POST"]),
    Route(f"{PATH}/{{obj_id}}", update, methods=["POST"]),
]
