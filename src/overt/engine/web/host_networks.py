"""A host's network interfaces and bonds on its page, with the networks each carries and
their addressing; forms attach a network of the host's cluster to a NIC or bond, set an
attachment's IPv4 and IPv6 boot protocols, create and remove bonds, and a button detaches
a network (all through `setupnetworks`, so the same checks as the API apply and a job
makes the node apply the change)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from overt.engine.db.tables import Cluster, Host, HostNetworkAttachment, Network
from overt.engine.model.bond_sync import BondView
from overt.engine.model.errors import InvalidInput
from overt.engine.queries import host_bonds as host_bond_reads
from overt.engine.queries import host_networks as host_network_reads
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref
from overt.engine.services import cluster_networks, host_facts, host_networks
from overt.engine.services.host_bonds import BondInput
from overt.engine.services.host_networks import AttachmentInput, SetupInput
from overt.engine.services.networks import is_management
from overt.engine.web.context import WebContext, page


@dataclass(frozen=True)
class NicRow:
    nic: host_facts.HostNic
    attachments: list[tuple[HostNetworkAttachment, Network]]


@dataclass(frozen=True)
class BondRow:
    bond: BondView
    attachments: list[tuple[HostNetworkAttachment, Network]]

    @property
    def mode(self) -> str:
        """The OVS mode the node has (else the defined one), in oVirt's words too."""
        mode = self.bond.reported.mode if self.bond.reported else (
            self.bond.defined.mode if self.bond.defined else "")
        return MODE_LABELS.get(mode, mode)

    def slave_link(self, name: str) -> str:
        if self.bond.reported is None:
            return ""
        up = next((s.link_up for s in self.bond.reported.slaves if s.name == name), None)
        return "" if up is None else ("up" if up else "down")


# OVS bond modes as the bond form offers them (oVirt's mode option, OVS's name).
MODE_LABELS = {"active-backup": "active-backup (1)", "balance-tcp": "802.3ad (4)",
               "balance-slb": "balance-slb"}
BOND_MODES = [("1", "active-backup (1)"), ("4", "802.3ad (4)"),
              ("balance-slb", "balance-slb")]


async def network_values(session: AsyncSession, host: Host) -> dict[str, Any]:
    """What the host page shows of its networking, and what its forms offer."""
    attached = await host_network_reads.list_attachments(session, host.id)
    bonds = await host_bond_reads.host_bond_views(session, host)
    slaves = {s for b in bonds for s in b.slaves}
    rows = [NicRow(nic, [(a, n) for a, n in attached if a.nic_name == nic.name])
            for nic in host_facts.host_nics(host)]
    bond_rows = [BondRow(b, [(a, n) for a, n in attached if a.nic_name == b.name])
                 for b in bonds]
    cluster = await lookup.get(session, Cluster, host.cluster_id)
    carried = {n.id for _a, n in attached}
    free = [item.network for item in await cluster_networks.list_attached(session, cluster)
            if item.network.id not in carried]
    return {"nic_rows": rows, "bond_rows": bond_rows, "free_networks": free,
            "is_management": is_management, "attachments": attached,
            "interfaces": [r.nic.name for r in rows if r.nic.name not in slaves
                           and not r.nic.bridged] + [b.name for b in bonds if b.defined],
            "bondable": [r.nic.name for r in rows if r.nic.name not in slaves
                         and not r.nic.bridged and not r.attachments],
            "bond_modes": BOND_MODES}


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


@page
async def set_addresses(ctx: WebContext) -> Response:
    """An attachment's IPv4 and IPv6 boot protocols (and static addresses)."""
    host_id = ctx.id_param("host_id")
    form = await ctx.form()
    attachment = _uuid(form.get("attachment"), "network of the host")
    await host_networks.setup_networks(
        ctx.session, ctx.services.jobs, host_id,
        SetupInput(modified=[AttachmentInput(
            id=attachment, boot_protocol=form.get("ipv4_boot_protocol") or "none",
            address=form.get("ipv4_address") or None, netmask=form.get("ipv4_netmask") or None,
            ipv6_boot_protocol=form.get("ipv6_boot_protocol") or "none",
            ipv6_address=form.get("ipv6_address") or None,
            ipv6_prefix=form.get("ipv6_prefix") or None)], commit_on_success=True), ctx.user)
    return RedirectResponse(f"/hosts/{host_id}", status_code=303)


@page
async def add_bond(ctx: WebContext) -> Response:
    host_id = ctx.id_param("host_id")
    form = await ctx.form()
    slaves = [Ref(name=name) for name in (await ctx.request.form()).getlist("slaves")
              if isinstance(name, str) and name]
    await host_networks.setup_networks(
        ctx.session, ctx.services.jobs, host_id,
        SetupInput(modified_bonds=[BondInput(name=(form.get("name") or "").strip(),
                                             options={"mode": form.get("mode") or "1"},
                                             slaves=slaves)], commit_on_success=True),
        ctx.user)
    return RedirectResponse(f"/hosts/{host_id}", status_code=303)


@page
async def remove_bond(ctx: WebContext) -> Response:
    host_id = ctx.id_param("host_id")
    await host_networks.setup_networks(
        ctx.session, ctx.services.jobs, host_id,
        SetupInput(removed_bonds=[Ref(name=ctx.request.path_params["bond"])],
                   commit_on_success=True), ctx.user)
    return RedirectResponse(f"/hosts/{host_id}", status_code=303)


ROUTES = [  # before the host actions' /hosts/{host_id}/{action}
    Route("/hosts/{host_id}/networks", attach, methods=["POST"]),
    Route("/hosts/{host_id}/networks/{attachment_id}/detach", detach, methods=["POST"]),
    Route("/hosts/{host_id}/network-addresses", set_addresses, methods=["POST"]),
    Route("/hosts/{host_id}/bonds", add_bond, methods=["POST"]),
    Route("/hosts/{host_id}/bonds/{bond}/remove", remove_bond, methods=["POST"]),
]
