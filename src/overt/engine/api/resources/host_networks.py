"""/hosts/ID/networkattachments, /hosts/ID/setupnetworks and /hosts/ID/commitnetconfig."""

from __future__ import annotations

import uuid

from starlette.responses import Response

from overt.engine.api.context import ApiContext, href
from overt.engine.api.network_readers import read_setup_networks
from overt.engine.api.resources.common import action_done
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.views import ref
from overt.engine.api.wire.render import Representation
from overt.engine.db.tables import Host, HostNetworkAttachment, Network
from overt.engine.queries import host_networks as host_network_reads
from overt.engine.queries import lookup
from overt.engine.services import host_networks

routes = ApiRoutes()


def attachment_view(host: Host, a: HostNetworkAttachment, network: Network) -> Representation:
    sync = host_networks.attachment_sync(host, a, network)
    rep: Representation = {
        "href": href("hosts", a.host_id, "networkattachments", a.id), "id": str(a.id),
        "in_sync": sync.in_sync, "network": ref("networks", network.id),
        "host_nic": {"href": href("hosts", a.host_id, "nics", _nic_id(a)),
                     "id": str(_nic_id(a)), "name": a.nic_name},
        "host": ref("hosts", a.host_id),
    }
    assignments: list[Representation] = []
    if a.boot_protocol != "none":
        assignment: Representation = {"assignment_method": a.boot_protocol}
        if a.boot_protocol == "static":  # a DHCP address is the node's, shown in its NICs
            assignment["ip"] = {"address": a.address, "netmask": a.netmask,
                                "gateway": a.gateway, "version": "v4"}
        assignments.append(assignment)
    if a.ipv6_boot_protocol != "none":
        assignment6: Representation = {"assignment_method": a.ipv6_boot_protocol}
        if a.ipv6_boot_protocol == "static":
            assignment6["ip"] = {"address": a.ipv6_address, "netmask": str(a.ipv6_prefix),
                                 "gateway": a.ipv6_gateway, "version": "v6"}
        else:  # dhcp or autoconf: the family says which one it is
            assignment6["ip"] = {"version": "v6"}
        assignments.append(assignment6)
    if assignments:
        rep["ip_address_assignments"] = {"ip_address_assignment": assignments}
    if sync.configurations is not None:
        rep["reported_configurations"] = {"reported_configuration": [
            {"name": c.name, "expected_value": c.expected, "actual_value": c.actual,
             "in_sync": c.in_sync} for c in sync.configurations]}
    return rep


def _nic_id(a: HostNetworkAttachment) -> uuid.UUID:
    return uuid.uuid5(a.host_id, a.nic_name)  # as `host_facts.host_nics` names NICs


@routes.get("/hosts/{host_id}/networkattachments")
async def list_attachments(ctx: ApiContext) -> Response:
    host = await lookup.get(ctx.session, Host, ctx.id_param("host_id"))
    rows = await host_network_reads.list_attachments(ctx.session, host.id)
    return ctx.render_list("network_attachments", "network_attachment",
                           [attachment_view(host, a, n) for a, n in rows])


@routes.get("/hosts/{host_id}/networkattachments/{attachment_id}")
async def get_attachment(ctx: ApiContext) -> Response:
    host = await lookup.get(ctx.session, Host, ctx.id_param("host_id"))
    a, n = await host_networks.get_attachment(ctx.session, host.id,
                                              ctx.id_param("attachment_id"))
    return ctx.render("network_attachment", attachment_view(host, a, n))


@routes.post("/hosts/{host_id}/setupnetworks")
async def setup_networks(ctx: ApiContext) -> Response:
    data = read_setup_networks(await ctx.body("action"))
    job = await host_networks.setup_networks(ctx.session, ctx.services.jobs,
                                             ctx.id_param("host_id"), data, ctx.user)
    return action_done(ctx, job)


@routes.post("/hosts/{host_id}/commitnetconfig")
async def commit_net_config(ctx: ApiContext) -> Response:
    await ctx.body("action")
    job = await host_networks.commit_net_config(ctx.session, ctx.services.jobs,
                                                ctx.id_param("host_id"), ctx.user)
    return action_done(ctx, job)
