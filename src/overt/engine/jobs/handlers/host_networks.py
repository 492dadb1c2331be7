"""Applying a host's network attachments on its node (`setupnetworks`, `commitnetconfig`).

With the connectivity check the node undoes the change by itself unless the engine reaches
it again within the timeout and confirms (the second command is that confirmation).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Host, HostBond, HostNetworkAttachment, Network
from overt.engine.jobs import overlay_peers
from overt.engine.jobs.context import JobContext, Unit
from overt.engine.jobs.kinds import CommitHostNetworks, JobSpec, SetupHostNetworks
from overt.engine.model.status import LogSeverity
from overt.engine.queries import host_bonds, host_networks, lookup
from overt.protocol.commands import HostCapabilitiesCommand
from overt.protocol.host import HostCapabilities
from overt.protocol.networks import (
    HostCommitNetworks,
    HostSetupNetworks,
    NetworkSetup,
    NetworkWiring,
    VxlanWiring,
)


def _prefix(netmask: str | None) -> int:
    return ipaddress.IPv4Network(f"0.0.0.0/{netmask or 0}").prefixlen


def _resolved(address: str) -> str:
    """A host's address as an IP address (VXLAN endpoints are addresses, not names)."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        try:
            return socket.gethostbyname(address)
        except OSError:
            return address  # the node's own tools then say what is wrong with it


async def _overlay(session: AsyncSession, host: Host, network: Network) -> VxlanWiring:
    """The overlay's tunnel from this host to every other host the network is attached to
    and that has not left (maintenance, not enrolled yet): `overlay_peers` sets the others
    up again when that set changes."""
    assert network.vxlan_id is not None
    others = (await session.execute(select(Host.address).join(
        HostNetworkAttachment, HostNetworkAttachment.host_id == Host.id).where(
        HostNetworkAttachment.network_id == network.id, Host.id != host.id,
        Host.status.not_in(overlay_peers.LEFT)))).scalars()
    local, *remotes = await asyncio.to_thread(
        lambda: [_resolved(a) for a in (host.address, *others)])
    return VxlanWiring(vni=network.vxlan_id, local=local, remotes=tuple(sorted(set(remotes))))


async def _overlay_ids(session: AsyncSession, ids: set[uuid.UUID]) -> set[uuid.UUID]:
    if not ids:
        return set()
    return set((await session.execute(select(Network.id).where(
        Network.id.in_(ids), Network.vxlan_id.is_not(None)))).scalars())


async def setup_networks(ctx: JobContext, spec: SetupHostNetworks) -> dict[str, Any]:
    host_id = spec.host_id
    async with ctx.transaction() as session:
        host = await lookup.get(session, Host, host_id)
        rows = await host_networks.list_attachments(session, host_id)
        overlays = {n.id: await _overlay(session, host, n) for _a, n in rows
                    if n.vxlan_id is not None}
        wanted = tuple(NetworkWiring(
            name=n.name, bridge=n.bridge, nic=a.nic_name, vlan=n.vlan_id, mtu=n.mtu,
            vxlan=overlays.get(n.id),
            boot_protocol=a.boot_protocol if a.boot_protocol in ("static", "dhcp") else "none",
            address=f"{a.address}/{_prefix(a.netmask)}" if a.address else None,
            gateway=a.gateway,
            ipv6_boot_protocol=a.ipv6_boot_protocol
            if a.ipv6_boot_protocol in ("static", "autoconf", "dhcp") else "none",
            ipv6_address=f"{a.ipv6_address}/{a.ipv6_prefix}" if a.ipv6_address else None,
            ipv6_gateway=a.ipv6_gateway) for a, n in rows)
        bonds = tuple(host_bonds.wiring(b) for b in await host_bonds.list_bonds(session, host_id))
    check = spec.check_connectivity
    timeout = spec.connectivity_timeout_s
    async with ctx.step(f"Applying {len(wanted)} network(s) on host {host.name}",
                        host_id=host.id):
        result = await ctx.nodes.call(
            host, HostSetupNetworks(networks=wanted, bonds=bonds,
                                    rollback_after_s=timeout if check else None),
            NetworkSetup, key=ctx.key("setup"), timeout_s=timeout + 10)
    if check:
        async with ctx.step(f"Confirming that host {host.name} is still reachable",
                            host_id=host.id):
            await ctx.nodes.call(host, HostCommitNetworks(), NetworkSetup,
                                 key=ctx.key("confirm"), timeout_s=timeout)
    caps = await ctx.nodes.call(host, HostCapabilitiesCommand(), HostCapabilities,
                                key=ctx.key("capabilities"))
    async with ctx.transaction() as session:
        host = await lookup.get(session, Host, host_id, for_update=True)
        host.capabilities = caps.model_dump(mode="json")
        host.kdump_status = caps.kdump_status
        # The monitor reads back how the node realised them (in sync, required networks).
        host.needs_resync = True
        carried: set[uuid.UUID] = set()
        for attachment, network in await host_networks.list_attachments(session, host_id):
            attachment.applied = True
            attachment.committed = attachment.committed or spec.commit
            if network.vxlan_id is not None:
                carried.add(network.id)
        if spec.peers:  # the overlays this host joined or left: their other hosts follow
            before = {old.network_id for old in spec.previous}
            left = await _overlay_ids(session, before - carried)
            changed = (carried - before) | left
            await overlay_peers.rewire(session, ctx.services.jobs, host, networks=changed,
                                       why=f"host {host.name} joined or left an overlay",
                                       owner_id=ctx.job.owner_id)
        audit.record(session, f"Networks of host {host.name} were set up: "
                     f"{', '.join(result.carried) or 'none'}", code=audit.NETWORK_UPDATED,
                     host_id=host.id, job_id=ctx.job.id)
    ctx.services.resync_soon()  # the attachments are in sync once the node's report is read
    return {"carried": list(result.carried), "removed": list(result.removed)}


async def commit_networks(ctx: JobContext, spec: CommitHostNetworks) -> dict[str, Any]:
    host_id = spec.host_id
    async with ctx.transaction() as session:
        host = await lookup.get(session, Host, host_id)
    async with ctx.step(f"Keeping the networks of host {host.name}", host_id=host.id):
        result = await ctx.nodes.call(host, HostCommitNetworks(), NetworkSetup,
                                      key=ctx.key("commit"))
    async with ctx.transaction() as session:
        for attachment, _network in await host_networks.list_attachments(session, host_id):
            attachment.committed = attachment.applied
    return {"carried": list(result.carried)}


async def setup_failed(session: AsyncSession, ctx: JobContext, spec: SetupHostNetworks,
                       message: str) -> None:
    """The node kept or restored its previous networks (it rolls back by itself when the
    engine cannot reach it to confirm): the engine shows the attachments as they were."""
    host = await session.get(Host, spec.host_id)
    if host is None or host.host_uuid is None:
        return  # no node yet: the recorded attachments are all there is, nothing to restore
    for attachment, _network in await host_networks.list_attachments(session, host.id):
        await session.delete(attachment)
    await session.flush()
    for bond in await host_bonds.list_bonds(session, host.id):
        await session.delete(bond)
    await session.flush()
    for old in spec.previous:
        session.add(HostNetworkAttachment(host_id=host.id, **old.model_dump()))
    for old_bond in spec.previous_bonds:
        session.add(HostBond(id=host_bonds.bond_id(host.id, old_bond.name), host_id=host.id,
                             name=old_bond.name, slaves=list(old_bond.slaves),
                             options=dict(old_bond.options)))
    host.needs_resync = True
    audit.record(session, f"The network change of host {host.name} was rolled back and its "
                 f"previous networks restored: {message}", code=audit.HOST_NETWORKS_ROLLED_BACK,
                 severity=LogSeverity.ERROR, host_id=host.id, job_id=ctx.job.id,
                 user_id=ctx.job.owner_id)


UNITS: dict[type[JobSpec], Unit[Any]] = {SetupHostNetworks: Unit(setup_networks,
                                                                 compensate=setup_failed),
                                         CommitHostNetworks: Unit(commit_networks)}
