"""/hosts/ID/nics (the interfaces the node reported) and /hosts/ID/refresh (report again)."""

from __future__ import annotations

import ipaddress
import uuid

from starlette.responses import Response

from overt.engine.api.context import ApiContext, href
from overt.engine.api.resources.common import action_done, action_params
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.views import ref
from overt.engine.api.wire.render import Representation
from overt.engine.db.tables import Host
from overt.engine.model.bond_sync import BondView, parse_reported, slave_links
from overt.engine.model.errors import NotFound
from overt.engine.queries import host_bonds, lookup
from overt.engine.services import host_facts

routes = ApiRoutes()


def _nic_view(host: Host, nic: host_facts.HostNic, link_up: bool | None) -> Representation:
    return {
        "href": href("hosts", host.id, "nics", nic.id), "id": str(nic.id), "name": nic.name,
        "mac": {"address": nic.mac} if nic.mac else None,
        "ip": _ip(nic.addresses, "v4"), "ipv6": _ip(nic.addresses, "v6"),
        "bridged": nic.bridged, "mtu": nic.mtu,
        "speed": nic.speed_mbps * 1_000_000 if nic.speed_mbps else None,
        "status": "down" if link_up is False else "up", "host": ref("hosts", host.id),
    }


def _ip(addresses: tuple[str, ...], version: str) -> Representation | None:
    """The NIC's first address of a family (IPv6: a global one), as oVirt shows it."""
    for text in addresses:
        try:
            iface = ipaddress.ip_interface(text)
        except ValueError:
            continue
        if (iface.version == 6) == (version == "v6") and not iface.ip.is_link_local:
            netmask = str(iface.netmask) if iface.version == 4 else str(iface.network.prefixlen)
            return {"address": str(iface.ip), "netmask": netmask, "version": version}
    return None


def _slave_ref(host: Host, name: str) -> Representation:
    slave_id = uuid.uuid5(host.id, name)
    return {"href": href("hosts", host.id, "nics", slave_id), "id": str(slave_id), "name": name}


def _bond_view(host: Host, bond: BondView) -> Representation:
    """A bond as oVirt shows it (a host NIC with its bonding options, slaves and active
    slave), the slaves and active slave as the node reports them; `properties` say whether
    the node has it as defined and what differs."""
    nic_id = host_bonds.bond_id(host.id, bond.name)
    active = bond.reported.active_slave if bond.reported else None
    properties = [{"name": "in_sync", "value": str(bond.in_sync).lower()}]
    for name, expected, actual in bond.differences:
        properties += [{"name": f"expected_{name}", "value": expected or "(none)"},
                       {"name": f"reported_{name}", "value": actual or "(none)"}]
    return {
        "href": href("hosts", host.id, "nics", nic_id), "id": str(nic_id), "name": bond.name,
        "bonding": {
            "options": {"option": [{"name": k, "value": v}
                                   for k, v in sorted(bond.options.items())]},
            "slaves": {"host_nic": [_slave_ref(host, s) for s in bond.slaves]},
            "active_slave": _slave_ref(host, active) if active else None},
        "properties": {"property": properties},
        "bridged": False, "status": "down" if bond.link_up is False else "up",
        "host": ref("hosts", host.id),
    }


async def _views(ctx: ApiContext, host: Host) -> list[tuple[uuid.UUID, Representation]]:
    links = slave_links(parse_reported(host.reported_bonds))
    nics = [(nic.id, _nic_view(host, nic, links.get(nic.name)))
            for nic in host_facts.host_nics(host)]
    bonds = [(host_bonds.bond_id(host.id, b.name), _bond_view(host, b))
             for b in await host_bonds.host_bond_views(ctx.session, host)]
    return nics + bonds


@routes.get("/hosts/{host_id}/nics")
async def list_nics(ctx: ApiContext) -> Response:
    host = await lookup.get(ctx.session, Host, ctx.id_param("host_id"))
    return ctx.render_list("host_nics", "host_nic", [v for _, v in await _views(ctx, host)])


@routes.get("/hosts/{host_id}/nics/{nic_id}")
async def get_nic(ctx: ApiContext) -> Response:
    host = await lookup.get(ctx.session, Host, ctx.id_param("host_id"))
    nic_id = ctx.id_param("nic_id")
    for found, view in await _views(ctx, host):
        if found == nic_id:
            return ctx.render("host_nic", view)
    raise NotFound(f"host {host.name} has no network interface with id {nic_id}")


@routes.post("/hosts/{host_id}/refresh")
async def refresh(ctx: ApiContext) -> Response:
    await action_params(ctx)
    job = await host_facts.refresh_host(ctx.session, ctx.services.jobs, ctx.id_param("host_id"),
                                        ctx.user)
    return action_done(ctx, job)
