"""A host's network interfaces on its page, with the networks each carries; a form attaches
a network of the host's cluster to a NIC, a button detaches one (both through `setupnetworks`,
so the same checks as the API apply and a job makes the node apply the change)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from overt.engine.db.tables import Cluster, Host, HostNetworkAttachment, Network
from overt.engine.model.errors import InvalidInput
from overt.engine.queries import host_networks as host_network_reads
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref
from overt.engine.services import cluster_networks, host_facts, host_networks
from overt.engine.services.host_networks import AttachmentInput, SetupInput
from overt.engine.services.networks import is_management
from overt.engine.web.context import WebContext, page


@dataclass(frozen=True)
class NicRow:
    nic: host_facts.HostNic
    attachments: list[tuple[HostNetworkAttachment, Network]]


async def network_values(session: AsyncSession, host: Host) -> dict[str, Any]:
    """What the host page shows of its networking, and what the attach form offers."""
    attached = await host_network_reads.list_attachments(session, host.id)
    rows = [NicRow(nic, [(a, n) for a, n in attached if a.nic_name == nic.name])
            for nic in host_facts.host_nics(host)]
    cluster = await lookup.get(session, Cluster, host.cluster_id)
    carried = {n.id for _a, n in attached}
    free = [item.network for item in await cluster_networks.list_attached(session, cluster)
            if item.network.id not in carried]
    return {"nic_rows": rows, "free_networks": free, "is_management": is_management}


def _uuid(raw: str | None, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw or "")
    except ValueError:
        raise InvalidInput(f"choose a {what}") from None


@page
async def attach(ctx: WebContext) -> Response:
    host_id = ctx.id_param("host_id")
    form = await ctx.form()
    network = Ref(id=_uuid(form.get("network"), "network"))
    if not form.get("nic"):
        raise InvalidInput("choose a network interface of the host")
    await host_networks.setup_networks(
        ctx.session, ctx.services.jobs, host_id,
        SetupInput(modified=[AttachmentInput(network=network, nic=Ref(name=form["nic"]))],
                   commit_on_success=True), ctx.user)
    return RedirectResponse(f"/hosts/{host_id}", status_code=303)


@page
async def detach(ctx: WebContext) -> Response:
    host_id = ctx.id_param("host_id")
    await host_networks.setup_networks(
        ctx.session, ctx.services.jobs, host_id,
        SetupInput(removed=[ctx.id_param("attachment_id")], commit_on_success=True), ctx.user)
    return RedirectResponse(f"/hosts/{host_id}", status_code=303)


ROUTES = [  # before the host actions' /hosts/{host_id}/{action}
    Route("/hosts/{host_id}/networks", attach, methods=["POST"]),
    Route("/hosts/{host_id}/networks/{attachment_id}/detach", detach, methods=["POST"]),
]
