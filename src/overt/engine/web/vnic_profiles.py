"""The portal's vNIC profiles page: every profile with its network, filter and users; a form
adds one, a button removes one (through the same service functions the API uses)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from overt.engine.db.tables import Network, VmNic, VnicProfile
from overt.engine.model.errors import InvalidInput, OvertError
from overt.engine.queries.lookup import Ref
from overt.engine.services import vnic_profiles
from overt.engine.web.context import WebContext, page

EMPTY_FORM = {"name": "", "network": "", "network_filter": vnic_profiles.DEFAULT_FILTER,
              "port_mirroring": ""}


async def _values(session: AsyncSession) -> dict[str, Any]:
    users = dict((await session.execute(
        select(VmNic.vnic_profile_id, func.count()).group_by(VmNic.vnic_profile_id))).all())
    rows = (await session.execute(
        select(VnicProfile, Network.name).join(Network, Network.id == VnicProfile.network_id)
        .order_by(Network.name, VnicProfile.name))).all()
    networks = list((await session.execute(select(Network).order_by(Network.name))).scalars())
    return {"rows": rows, "users": users, "networks": networks,
            "filters": vnic_profiles.NETWORK_FILTERS}


def _show_error(ctx: WebContext, form: dict[str, str]
                ) -> Callable[[OvertError], Awaitable[Response]]:
    async def show(exc: OvertError) -> Response:
        async with ctx.request.app.state.db.transaction() as session:
            return ctx.render("vnic_profiles.html", exc.status, nav="networks", form=form,
                              error=f"{exc.reason}: {exc.detail}", **await _values(session))
    return show


@page
async def profiles_page(ctx: WebContext) -> Response:
    return ctx.render("vnic_profiles.html", nav="networks", form=dict(EMPTY_FORM), error=None,
                      **await _values(ctx.session))


@page
async def add(ctx: WebContext) -> Response:
    form = {**EMPTY_FORM, "port_mirroring": "", **await ctx.form()}
    ctx.on_error = _show_error(ctx, form)
    try:
        network = Ref(id=uuid.UUID(form.get("network", "")))
    except ValueError:
        raise InvalidInput("choose the profile's network") from None
    chosen = form.get("network_filter", "")
    await vnic_profiles.add_profile(ctx.session, vnic_profiles.ProfileInput(
        name=form.get("name", "").strip(), network=network,
        port_mirroring=form.get("port_mirroring") == "on",
        network_filter=Ref(name=chosen) if chosen else None, clear_filter=not chosen), ctx.user)
    return RedirectResponse("/vnicprofiles", status_code=303)


@page
async def remove(ctx: WebContext) -> Response:
    ctx.on_error = _show_error(ctx, dict(EMPTY_FORM))
    await vnic_profiles.remove_profile(ctx.session, ctx.id_param("profile_id"), ctx.user)
    return RedirectResponse("/vnicprofiles", status_code=303)


ROUTES = [
    Route("/vnicprofiles", profiles_page),
    Route("/vnicprofiles", add, methods=["POST"]),
    Route("/vnicprofiles/{profile_id}/remove", remove, methods=["POST"]),
]
