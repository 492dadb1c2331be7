"""/users/{id}/eventsubscriptions (oVirt's) and /snmpmanagers (Overt's): what is notified,
and the trap receivers it goes to. A manager's secrets are write-only."""

from __future__ import annotations

import uuid

from starlette.responses import Response

from overt.engine.api.context import ApiContext, href
from overt.engine.api.resources.common import action_done
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.views import ref
from overt.engine.api.wire.parse import Node
from overt.engine.api.wire.render import Representation
from overt.engine.db.tables import EventSubscription, SnmpManager
from overt.engine.identity.access import SYSTEM
from overt.engine.model.errors import NotFound, Unavailable
from overt.engine.secrets import Secret, SecretBox
from overt.engine.services import notifications as service
from overt.engine.services.notifications import ManagerInput

routes = ApiRoutes()


def subscription_view(row: EventSubscription) -> Representation:
    return {"href": href("users", row.user_id, "eventsubscriptions", row.event),
            "id": row.event, "event": row.event,
            "notification_method": row.notification_method, "address": row.address,
            "user": ref("users", row.user_id)}


def _readable_user_id(ctx: ApiContext) -> uuid.UUID:
    """Users read their own subscriptions; others' need `manipulate_users` on the system
    (without it, theirs are not found)."""
    user_id = ctx.id_param("user_id")
    access = ctx.request.state.access
    if user_id != ctx.user.id and not access.superuser and \
            "manipulate_users" not in access.permits_on([(SYSTEM, None)]):
        raise NotFound(f"there is no user with id {user_id}, or you have no permission on it")
    return user_id


@routes.get("/users/{user_id}/eventsubscriptions")
async def list_subscriptions(ctx: ApiContext) -> Response:
    rows = await service.subscriptions(ctx.session, _readable_user_id(ctx))
    return ctx.render_list("event_subscriptions", "event_subscription",
                           [subscription_view(r) for r in rows])


@routes.post("/users/{user_id}/eventsubscriptions")
async def add_subscription(ctx: ApiContext) -> Response:
    node = await ctx.body("event_subscription")
    row = await service.subscribe(ctx.session, ctx.id_param("user_id"),
                                  event=node.get_str("event"),
                                  method=node.get_str("notification_method"),
                                  address=node.get_str("address"), by=ctx.user)
    return ctx.render("event_subscription", subscription_view(row), status=201)


@routes.get("/users/{user_id}/eventsubscriptions/{event}")
async def get_subscription(ctx: ApiContext) -> Response:
    row = await service.subscription(ctx.session, _readable_user_id(ctx),
                                     ctx.path_params["event"])
    return ctx.render("event_subscription", subscription_view(row))


@routes.delete("/users/{user_id}/eventsubscriptions/{event}")
async def remove_subscription(ctx: ApiContext) -> Response:
    await service.unsubscribe(ctx.session, ctx.id_param("user_id"), ctx.path_params["event"],
                              ctx.user)
    return action_done(ctx)


# -- SNMP managers -------------------------------------------------------------------

def manager_view(row: SnmpManager) -> Representation:
    rep: Representation = {"href": href("snmpmanagers", row.id), "id": str(row.id),
                           "name": row.name, "address": row.host, "port": str(row.port),
                           "version": row.version}
    if row.version == "v3":
        rep.update(user=row.user_name, engine_id=row.engine_id,
                   auth_protocol="sha", priv_protocol="aes")
    return rep


def _secret(node: Node, name: str) -> Secret | None:
    value = node.get_str(name)
    return Secret(value) if value is not None else None


def _box(ctx: ApiContext) -> SecretBox:
    box: SecretBox | None = ctx.services.secrets
    if box is None:
        raise Unavailable("this engine keeps no secrets store: SNMP managers are unavailable")
    return box


@routes.get("/snmpmanagers")
async def list_managers(ctx: ApiContext) -> Response:
    rows = await service.managers(ctx.session)
    return ctx.render_list("snmp_managers", "snmp_manager", [manager_view(r) for r in rows])


def _manager_input(node: Node) -> ManagerInput:
    return ManagerInput(
        name=node.get_str("name"), address=node.get_str("address"),
        port=node.get_int("port"), version=node.get_str("version"),
        community=_secret(node, "community"), user=node.get_str("user"),
        auth_passphrase=_secret(node, "auth_passphrase"),
        priv_passphrase=_secret(node, "priv_passphrase"), engine_id=node.get_str("engine_id"))


@routes.post("/snmpmanagers")
async def add_manager(ctx: ApiContext) -> Response:
    node = await ctx.body("snmp_manager")
    row = await service.add_manager(ctx.session, _box(ctx), _manager_input(node), ctx.user)
    return ctx.render("snmp_manager", manager_view(row), status=201)


@routes.put("/snmpmanagers/{manager_id}")
async def update_manager(ctx: ApiContext) -> Response:
    node = await ctx.body("snmp_manager")
    row = await service.update_manager(ctx.session, _box(ctx), ctx.id_param("manager_id"),
                                       _manager_input(node), ctx.user)
    return ctx.render("snmp_manager", manager_view(row))


@routes.get("/snmpmanagers/{manager_id}")
async def get_manager(ctx: ApiContext) -> Response:
    return ctx.render("snmp_manager", manager_view(
        await service.get_manager(ctx.session, ctx.id_param("manager_id"))))


@routes.delete("/snmpmanagers/{manager_id}")
async def remove_manager(ctx: ApiContext) -> Response:
    await service.remove_manager(ctx.session, ctx.id_param("manager_id"), ctx.user)
    return action_done(ctx)
