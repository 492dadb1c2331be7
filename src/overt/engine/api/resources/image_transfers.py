"""/imagetransfers: oVirt's image transfers (disk upload and download through imageio)."""

from __future__ import annotations

from starlette.responses import Response

from overt.engine.api.context import ApiContext, href
from overt.engine.api.resources.common import action_done, action_params
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.views import actions, ref
from overt.engine.api.wire.parse import Node
from overt.engine.api.wire.render import Representation
from overt.engine.model.errors import InvalidInput, Unavailable
from overt.engine.services.image_transfers import (
    Direction,
    ImageTransfers,
    Transfer,
    TransferRequest,
)

routes = ApiRoutes()
VERBS = ("cancel", "extend", "finalize", "pause", "resume")


def image_transfer(t: Transfer) -> Representation:
    base = href("imagetransfers", t.id)
    return {
        "href": base, "id": str(t.id), "actions": actions(base, *VERBS),
        "active": t.phase.value == "transferring", "direction": t.direction.value,
        "format": t.format, "inactivity_timeout": t.inactivity_timeout,
        "phase": t.phase.value, "shallow": False, "timeout_policy": "legacy",
        "transfer_url": t.transfer_url, "proxy_url": t.proxy_url or t.transfer_url,
        "transferred": t.transferred,
        "disk": ref("disks", t.disk_id),
        **({"host": ref("hosts", t.node.host.id)} if t.node is not None else {}),
    }


def read_image_transfer(node: Node) -> TransferRequest:
    disk = node.child("disk") or node.child("image")
    host = node.child("host")
    direction = node.get_enum("direction", Direction)
    fmt = node.get_str("format")
    return TransferRequest(
        disk_id=disk.get_id() if disk is not None else None,
        direction=direction or Direction.UPLOAD, format=fmt,
        inactivity_timeout=node.get_int("inactivity_timeout", minimum=1),
        host_id=host.get_id() if host is not None else None)


def _transfers(ctx: ApiContext) -> ImageTransfers:
    found: ImageTransfers | None = ctx.services.image_transfers
    if found is None:
        raise Unavailable("This API process serves no image transfers")
    return found


@routes.get("/imagetransfers")
async def list_transfers(ctx: ApiContext) -> Response:
    return ctx.render_list("image_transfers", "image_transfer",
                           [image_transfer(t) for t in _transfers(ctx).all()])


@routes.get("/imagetransfers/{transfer_id}")
async def get_transfer(ctx: ApiContext) -> Response:
    transfer = _transfers(ctx).get(ctx.id_param("transfer_id"))
    return ctx.render("image_transfer", image_transfer(transfer))


@routes.post("/imagetransfers")
async def add_transfer(ctx: ApiContext) -> Response:
    request = read_image_transfer(await ctx.body("image_transfer"))
    transfer = await _transfers(ctx).start(ctx.session, request, ctx.user)
    return ctx.render("image_transfer", image_transfer(transfer), status=201)


async def _act(ctx: ApiContext, verb: str) -> Response:
    transfers = _transfers(ctx)
    await action_params(ctx)
    transfer = transfers.get(ctx.id_param("transfer_id"))
    if verb == "finalize":
        refusal = await transfers.finalize(ctx.session, ctx.services.jobs, transfer, ctx.user)
        if refusal is not None:  # the transfer ended and its disk goes: say why, once saved
            async def refuse() -> Response:
                raise InvalidInput(f"Cannot finalize image transfer {transfer.id}: {refusal}")
            ctx.then = refuse
    elif verb == "cancel":
        await transfers.cancel(ctx.session, ctx.services.jobs, transfer, ctx.user)
    elif verb == "pause":
        await transfers.pause(transfer)
    elif verb == "resume":
        await transfers.resume(transfer)
    else:
        await transfers.extend(transfer)
    return action_done(ctx)


def _action_route(verb: str) -> None:
    async def endpoint(ctx: ApiContext) -> Response:
        return await _act(ctx, verb)
    endpoint.__name__ = f"{verb}_transfer"
    routes.post(f"/imagetransfers/{{transfer_id}}/{verb}")(endpoint)


for _verb in VERBS:
    _action_route(_verb)
