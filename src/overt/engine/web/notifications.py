"""The portal's notifications page: the SNMP managers the engine sends its traps to, and
the users' event subscriptions that say which events go there. Adding and removing go
through the same service functions as the API's /snmpmanagers and
/users/{id}/eventsubscriptions; a refusal is shown by the form that caused it, with what
was typed (never the secrets: those are typed again)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from overt.engine.db.tables import EventSubscription, SnmpManager, User
from overt.engine.model.errors import InvalidInput, OvertError, Unavailable
from overt.engine.notifier.events import NOTIFIABLE
from overt.engine.secrets import Secret, SecretBox
from overt.engine.services import notifications as service
from overt.engine.services.notifications import ManagerInput
from overt.engine.web.context import WebContext, page

PATH = "/notifications"
NAV = "notifications"
SECRETS = ("community", "auth_passphrase", "priv_passphrase")
EMPTY_MANAGER = {"name": "", "address": "", "port": "162", "version": "v2c", "user": "",
                 "engine_id": ""}
EMPTY_SUBSCRIPTION = {"user": "", "event": "", "manager": ""}


def read_manager(form: dict[str, str]) -> ManagerInput:
    """The service's input from the manager form (an empty secret: not given)."""
    raw_port = form.get("port", "").strip()
    if raw_port and not raw_port.isdigit():
        raise InvalidInput(f"the port must be a number, not {raw_port[:20]!r}")

    def secret(key: str) -> Secret | None:
        return Secret(form[key]) if form.get(key) else None

    return ManagerInput(name=form.get("name", "").strip(),
                        address=form.get("address", "").strip(),
                        port=int(raw_port) if raw_port else None,
                        version=form.get("version") or None,
                        community=secret("community"), user=form.get("user", "").strip() or None,
                        auth_passphrase=secret("auth_passphrase"),
                        priv_passphrase=secret("priv_passphrase"),
                        engine_id=form.get("engine_id", "").strip() or None)


async def _values(session: AsyncSession, viewer: User) -> dict[str, Any]:
    subscriptions = (await session.execute(
        select(EventSubscription, User.user_name)
        .join(User, User.id == EventSubscription.user_id)
        .order_by(User.user_name, EventSubscription.event))).all()
    users = list((await session.execute(select(User).order_by(User.user_name))).scalars())
    return {"managers": await service.managers(session), "subscriptions": subscriptions,
            "users": users, "events": sorted(NOTIFIABLE), "viewer_id": str(viewer.id)}


def _render(ctx: WebContext, values: dict[str, Any], *, status: int = 200,
            manager_form: dict[str, str] | None = None,
            subscription_form: dict[str, str] | None = None, error: str | None = None,
            error_at: str = "") -> Response:
    return ctx.render("notifications.html", status, nav=NAV, editing=None, **values,
                      manager_form={k: v for k, v in (manager_form or EMPTY_MANAGER).items()
                                    if k not in SECRETS},
                      subscription_form=subscription_form or {
                          **EMPTY_SUBSCRIPTION, "user": values["viewer_id"]},
                      error=error, error_at=error_at)


def _show_error(ctx: WebContext, error_at: str, **forms: dict[str, str]
                ) -> Callable[[OvertError], Awaitable[Response]]:
    """The page again, the refused form as the user filled it, with the reason."""
    async def show(exc: OvertError) -> Response:
        async with ctx.request.app.state.db.transaction() as session:
            viewer = await session.get(User, ctx.viewer.id)
            assert viewer is not None
            return _render(ctx, await _values(session, viewer), status=exc.status,
                           error=f"{exc.reason}: {exc.detail}", error_at=error_at, **forms)
    return show


@page
async def notifications_page(ctx: WebContext) -> Response:
    return _render(ctx, await _values(ctx.session, ctx.user))


@page
async def add_manager(ctx: WebContext) -> Response:
    form = {**EMPTY_MANAGER, **await ctx.form()}
    ctx.on_error = _show_error(ctx, "manager", manager_form=form)
    await service.add_manager(ctx.session, _box(ctx), read_manager(form), ctx.user)
    return RedirectResponse(PATH, status_code=303)


def _box(ctx: WebContext) -> SecretBox:
    box: SecretBox | None = ctx.services.secrets
    if box is None:
        raise Unavailable("this engine keeps no secrets store: SNMP managers are unavailable")
    return box


def manager_values(row: SnmpManager) -> dict[str, str]:
    return {"name": row.name, "address": row.host, "port": str(row.port),
            "version": row.version, "user": row.user_name, "engine_id": row.engine_id}


def _render_edit(ctx: WebContext, row: SnmpManager | dict[str, Any], form: dict[str, str],
                 error: str | None = None, status: int = 200) -> Response:
    return ctx.render("snmp_manager_edit.html", status, nav=NAV, editing=row, error=error,
                      manager_form={k: v for k, v in form.items() if k not in SECRETS})


@page
async def edit_manager_form(ctx: WebContext) -> Response:
    row = await service.get_manager(ctx.session, ctx.id_param("manager_id"))
    return _render_edit(ctx, row, manager_values(row))


@page
async def update_manager(ctx: WebContext) -> Response:
    """Empty secrets (and an empty engine id) leave the manager's as they are."""
    row = await service.get_manager(ctx.session, ctx.id_param("manager_id"))
    shown = {"id": row.id, "name": row.name}
    form = {**manager_values(row), **await ctx.form()}

    async def show(exc: OvertError) -> Response:
        return _render_edit(ctx, shown, form, f"{exc.reason}: {exc.detail}", exc.status)
    ctx.on_error = show
    await service.update_manager(ctx.session, _box(ctx), row.id, read_manager(form), ctx.user)
    return RedirectResponse(PATH, status_code=303)


@page
async def remove_manager(ctx: WebContext) -> Response:
    ctx.on_error = _show_error(ctx, "managers")
    await service.remove_manager(ctx.session, ctx.id_param("manager_id"), ctx.user)
    return RedirectResponse(PATH, status_code=303)


@page
async def subscribe(ctx: WebContext) -> Response:
    form = {**EMPTY_SUBSCRIPTION, **await ctx.form()}
    ctx.on_error = _show_error(ctx, "subscription", subscription_form=form)
    try:
        user_id = uuid.UUID(form.get("user", ""))
    except ValueError:
        raise InvalidInput("choose the user to subscribe") from None
    await service.subscribe(ctx.session, user_id, event=form.get("event") or None,
                            method="snmp", address=form.get("manager", ""), by=ctx.user)
    return RedirectResponse(PATH, status_code=303)


@page
async def unsubscribe(ctx: WebContext) -> Response:
    ctx.on_error = _show_error(ctx, "subscriptions")
    await service.unsubscribe(ctx.session, ctx.id_param("user_id"),
                              str(ctx.request.path_params["event"]), ctx.user)
    return RedirectResponse(PATH, status_code=303)


ROUTES = [
    Route(PATH, notifications_page),
    Route(f"{PATH}/managers", add_manager, methods=["POST"]),
    Route(f"{PATH}/managers/{{manager_id}}/edit", edit_manager_form),
    Route(f"{PATH}/managers/{{manager_id}}/remove", remove_manager, methods=["POST"]),
    Route(f"{PATH}/managers/{{manager_id}}", update_manager, methods=["POST"]),
    Route(f"{PATH}/subscriptions", subscribe, methods=["POST"]),
    Route(f"{PATH}/subscriptions/{{user_id}}/{{event}}/remove", unsubscribe, methods=["POST"]),
]
