"""A host's network attachments: which logical network rides on which of its NICs, with
which address; `setupnetworks` changes them and a job makes the node apply them.

Everything is checked before anything changes: the NIC must be one the host reported, the
network one of its cluster's, no two untagged networks (or two equal tags) on one NIC, an
MTU the NIC can carry, and the management network stays.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Cluster, Host, HostNetworkAttachment, Job, Network, User
from overt.engine.jobs.kinds import (
    AttachmentSnapshot,
    BondSnapshot,
    CommitHostNetworks,
    SetupHostNetworks,
)
from overt.engine.model.errors import Conflict, InvalidInput, NotFound
from overt.engine.model.network_sync import SyncState, WantedNetwork, parse_reported, sync_state
from overt.engine.model.status import HostStatus
from overt.engine.queries import host_bonds as bond_reads
from overt.engine.queries import lookup
from overt.engine.queries.host_networks import list_attachments
from overt.engine.queries.lookup import Ref
from overt.engine.services import cluster_networks, host_bonds, host_facts
from overt.engine.services.jobs import JobSubmitter
from overt.engine.services.networks import is_management
from overt.protocol.networks import OVERLAY_DEFAULT_MTU

DEFAULT_CONNECTIVITY_TIMEOUT_S = 120
_REACHABLE = {HostStatus.UP, HostStatus.MAINTENANCE,
              HostStatus.NON_OPERATIONAL}
_DEFAULT_MTU = 1500


@dataclass
class AttachmentInput:
    """One `<network_attachment>` of a `setupnetworks` request."""

    id: uuid.UUID | None = None
    network: Ref | None = None
    nic: Ref | None = None
    boot_protocol: str | None = None  # none / static / dhcp
    address: str | None = None
    netmask: str | None = None
    gateway: str | None = None
    ipv6_boot_protocol: str | None = None  # none / static / autoconf / dhcp
    ipv6_address: str | None = None
    ipv6_prefix: str | None = None
    ipv6_gateway: str | None = None


@dataclass
class SetupInput:
    modified: list[AttachmentInput] = field(default_factory=list)
    removed: list[uuid.UUID] = field(default_factory=list)
    synchronized: list[uuid.UUID] = field(default_factory=list)
    modified_bonds: list[host_bonds.BondInput] = field(default_factory=list)
    removed_bonds: list[Ref] = field(default_factory=list)
    check_connectivity: bool = False
    connectivity_timeout_s: int | None = None
    commit_on_success: bool = False


async def get_attachment(session: AsyncSession, host_id: uuid.UUID, attachment_id: uuid.UUID
                         ) -> tuple[HostNetworkAttachment, Network]:
    for attachment, network in await list_attachments(session, host_id):
        if attachment.id == attachment_id:
            return attachment, network
    raise NotFound(f"host {host_id} has no network attachment {attachment_id}")


def attachment_sync(host: Host, attachment: HostNetworkAttachment, network: Network
                    ) -> SyncState:
    """Whether the node carries the attachment as defined, from its last report."""
    mtu = network.mtu or (OVERLAY_DEFAULT_MTU if network.vxlan_id is not None else 0)
    wanted = WantedNetwork(name=network.name, vlan=network.vlan_id, mtu=mtu,
                           boot_protocol=attachment.boot_protocol, address=attachment.address,
                           netmask=attachment.netmask,
                           ipv6_boot_protocol=attachment.ipv6_boot_protocol,
                           ipv6_address=attachment.ipv6_address,
                           ipv6_prefix=attachment.ipv6_prefix)
    return sync_state(wanted, attachment.applied, parse_reported(host.reported_networks))


def _nic_named(host: Host, ref: Ref | None, what: str, bonds: list[str]) -> host_facts.HostNic:
    if ref is None or (ref.id is None and not ref.name):
        raise InvalidInput(f"{what}.host_nic is required (give its id or name)")
    bond_nics = [host_facts.HostNic(id=bond_reads.bond_id(host.id, b), name=b, mac=None,
                                    addresses=(), bridged=False, speed_mbps=None, mtu=None)
                 for b in bonds]
    for nic in [*host_facts.host_nics(host), *bond_nics]:
        if (ref.id is not None and nic.id == ref.id) or (ref.id is None and nic.name == ref.name):
            return nic
    raise InvalidInput(f"{what}.host_nic {ref.id or ref.name} is not a NIC of host {host.name}")


def _check_ip(data: AttachmentInput, what: str) -> tuple[str, str | None, str | None,
                                                          str | None]:
    method = (data.boot_protocol or "none").lower()
    if method not in ("none", "static", "dhcp"):
        raise InvalidInput(f"{what} assignment_method {method!r} is not none, static or dhcp")
    if method != "static":
        return method, None, None, None
    if not data.address or not data.netmask:
        raise InvalidInput(f"{what}: a static address needs ip.address and ip.netmask")
    try:
        iface = ipaddress.IPv4Interface(f"{data.address}/{data.netmask}")
        gateway = str(ipaddress.IPv4Address(data.gateway)) if data.gateway else None
    except ValueError as exc:
        raise InvalidInput(f"{what}: {exc}") from None
    if gateway is not None and ipaddress.IPv4Address(gateway) not in iface.network:
        raise InvalidInput(f"{what}: gateway {gateway} is outside {iface.network}")
    return method, str(iface.ip), str(iface.netmask), gateway


Ip6 = tuple[str, str | None, int | None, str | None]


def _check_ip6(data: AttachmentInput, what: str) -> Ip6:
    method = (data.ipv6_boot_protocol or "none").lower()
    if method not in ("none", "static", "autoconf", "dhcp"):
        raise InvalidInput(f"{what} IPv6 assignment_method {method!r} is not none, static, "
                           "autoconf or dhcp")
    if method != "static":
        return method, None, None, None
    if not data.ipv6_address or not data.ipv6_prefix:
        raise InvalidInput(f"{what}: a static IPv6 address needs ip.address and ip.netmask "
                           "(the prefix length)")
    try:
        iface = ipaddress.IPv6Interface(f"{data.ipv6_address}/{int(data.ipv6_prefix)}")
        gateway = ipaddress.IPv6Address(data.ipv6_gateway) if data.ipv6_gateway else None
    except ValueError as exc:
        raise InvalidInput(f"{what}: {exc}") from None
    if iface.ip.is_link_local or iface.ip.is_multicast:
        raise InvalidInput(f"{what}: {iface.ip} is not an address a host network can carry")
    return method, str(iface.ip), iface.network.prefixlen, str(gateway) if gateway else None


async def setup_networks(session: AsyncSession, jobs: JobSubmitter, host_id: uuid.UUID,
                         data: SetupInput, user: User) -> Job:
    host = await lookup.get(session, Host, host_id, for_update=True)
    if host.status not in _REACHABLE:
        raise Conflict(f"Cannot set up networks of host {host.name}: it is {host.status}.")
    cluster = await lookup.get(session, Cluster, host.cluster_id)
    allowed = {item.network.id: item.network
               for item in await cluster_networks.list_attached(session, cluster)}
    current = {a.id: (a, n) for a, n in await list_attachments(session, host.id)}
    bonds_now = await bond_reads.list_bonds(session, host.id)
    bonds = host_bonds.plan(host, bonds_now, data.modified_bonds, data.removed_bonds)
    previous = tuple(AttachmentSnapshot(
        id=a.id, network_id=a.network_id, nic_name=a.nic_name, boot_protocol=a.boot_protocol,
        address=a.address, netmask=a.netmask, gateway=a.gateway,
        ipv6_boot_protocol=a.ipv6_boot_protocol, ipv6_address=a.ipv6_address,
        ipv6_prefix=a.ipv6_prefix, ipv6_gateway=a.ipv6_gateway, applied=a.applied,
        committed=a.committed) for a, _n in current.values())
    for removed_id in data.removed:
        if removed_id not in current:
            raise InvalidInput(f"host {host.name} has no network attachment {removed_id}")
        if is_management(current[removed_id][1]):
            raise Conflict(f"Cannot detach the management network {current[removed_id][1].name} "
                           f"from host {host.name}.")
    # The wanted result, by network: (attachment or None, network, nic, ip settings).
    wanted: dict[uuid.UUID, tuple[HostNetworkAttachment | None, Network, str, tuple[
        str, str | None, str | None, str | None], Ip6]] = {
        n.id: (a, n, a.nic_name, (a.boot_protocol, a.address, a.netmask, a.gateway),
               (a.ipv6_boot_protocol, a.ipv6_address, a.ipv6_prefix, a.ipv6_gateway))
        for a, n in current.values() if a.id not in data.removed}
    for index, item in enumerate(data.modified):
        what = f"modified_network_attachments[{index}]"
        existing = current.get(item.id) if item.id is not None else None
        if item.id is not None and existing is None:
            raise InvalidInput(f"{what}: host {host.name} has no network attachment {item.id}")
        if existing is not None and item.network is None:
            network = existing[1]
        else:
            network = await lookup.resolve(session, Network, item.network, f"{what}.network")
        if network.id not in allowed:
            raise InvalidInput(f"{what}: network {network.name} is not attached to cluster "
                               f"{cluster.name} of host {host.name}")
        if existing is None:
            existing = next(((a, n) for a, n in current.values() if n.id == network.id), None)
        nic = _nic_named(host, item.nic, what, list(bonds.wanted)) \
            if item.nic is not None or existing is None \
            else _nic_named(host, Ref(name=existing[0].nic_name), what, list(bonds.wanted))
        ip = _check_ip(item, what)
        ip6 = _check_ip6(item, what)
        if existing is not None and item.ipv6_boot_protocol is None:
            old = existing[0]  # an assignment of one family leaves the other as it was
            ip6 = (old.ipv6_boot_protocol, old.ipv6_address, old.ipv6_prefix, old.ipv6_gateway)
        wanted[network.id] = (existing[0] if existing else None, network, nic.name, ip, ip6)
    for _, placed, on, _, _ in wanted.values():
        if is_management(placed) and on in bonds.wanted:
            raise InvalidInput(f"the management network {placed.name} cannot move onto bond "
                               f"{on} of host {host.name}: it keeps the node's own bridge")
    _check_layout(host, [(n, nic) for _, n, nic, _, _ in wanted.values()])
    host_bonds.check_networks(host, bonds, [(n.name, n.vlan_id, nic)
                                            for _, n, nic, _, _ in wanted.values()])
    await host_bonds.apply(session, host, bonds_now, bonds)
    for attachment_id in data.removed:
        await session.delete(current[attachment_id][0])
    for attachment, network, nic_name, (method, address, netmask, gateway), ip6 in \
            wanted.values():
        if attachment is None:
            attachment = HostNetworkAttachment(id=uuid.uuid4(), host_id=host.id,
                                               network_id=network.id)
            session.add(attachment)
        old6 = (attachment.ipv6_boot_protocol, attachment.ipv6_address, attachment.ipv6_prefix,
                attachment.ipv6_gateway)
        changed = (attachment.nic_name, attachment.boot_protocol, attachment.address,
                   attachment.netmask, attachment.gateway, old6) != (
                       nic_name, method, address, netmask, gateway, ip6)
        if changed or attachment.id in data.synchronized:
            attachment.applied = attachment.committed = False
        attachment.nic_name, attachment.boot_protocol = nic_name, method
        attachment.address, attachment.netmask, attachment.gateway = address, netmask, gateway
        (attachment.ipv6_boot_protocol, attachment.ipv6_address, attachment.ipv6_prefix,
         attachment.ipv6_gateway) = ip6
    await session.flush()
    timeout = data.connectivity_timeout_s or DEFAULT_CONNECTIVITY_TIMEOUT_S
    if not 1 <= timeout <= 600:
        raise InvalidInput(f"connectivity_timeout must be between 1 and 600 s, not {timeout}")
    audit.record(session, f"Network setup of host {host.name} was changed by {user.user_name}",
                 code=audit.NETWORK_UPDATED, host_id=host.id, user_id=user.id)
    return await jobs.submit(
        session, SetupHostNetworks(host_id=host.id, check_connectivity=data.check_connectivity,
                                   connectivity_timeout_s=timeout,
                                   commit=data.commit_on_success, previous=previous,
                                   previous_bonds=tuple(
                                       BondSnapshot(name=b.name, slaves=tuple(b.slaves),
                                                    options=dict(b.options))
                                       for b in bonds_now)),
        description=f"Setting up the networks of host {host.name}", owner_id=user.id)


def _nic_mtu(host: Host, nic_name: str) -> int | None:
    for nic in (host.capabilities or {}).get("nics") or []:
        if nic.get("name") == nic_name:
            mtu = nic.get("mtu")
            return int(mtu) if isinstance(mtu, int) else None
    return None


def _check_layout(host: Host, placed: list[tuple[Network, str]]) -> None:
    """At most one untagged network and distinct tags per NIC; MTUs the NIC carries."""
    by_nic: dict[str, list[Network]] = {}
    for network, nic in placed:
        by_nic.setdefault(nic, []).append(network)
    for nic, networks in by_nic.items():
        # An overlay rides on the NIC's address, not on the NIC itself: any number fit.
        untagged = [n.name for n in networks if n.vlan_id is None and n.vxlan_id is None]
        if len(untagged) > 1:
            raise InvalidInput(f"NIC {nic} of host {host.name} cannot carry two networks "
                               f"without a VLAN: {', '.join(untagged)}")
        tags = [n.vlan_id for n in networks if n.vlan_id is not None]
        if len(tags) != len(set(tags)):
            raise InvalidInput(f"NIC {nic} of host {host.name} cannot carry two networks with "
                               "the same VLAN id")
        nic_mtu = _nic_mtu(host, nic)
        for network in networks:
            mtu = network.mtu or _DEFAULT_MTU
            if nic_mtu is not None and mtu > nic_mtu:
                raise InvalidInput(f"network {network.name} needs MTU {mtu} but NIC {nic} of "
                                   f"host {host.name} carries at most {nic_mtu}")


async def commit_net_config(session: AsyncSession, jobs: JobSubmitter, host_id: uuid.UUID,
                            user: User) -> Job:
    host = await lookup.get(session, Host, host_id)
    if host.status not in _REACHABLE:
        raise Conflict(f"Cannot commit the networks of host {host.name}: it is {host.status}.")
    return await jobs.submit(
        session, CommitHostNetworks(host_id=host.id),
        description=f"Keeping the network setup of host {host.name}", owner_id=user.id)
