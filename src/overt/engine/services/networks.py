"""Logical networks: add (with a vNIC profile of the same name), update, remove when unused."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import (
    Cluster,
    ClusterNetwork,
    DataCenter,
    HostNetworkAttachment,
    Network,
    User,
    VmNic,
    VnicProfile,
)
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.model.names import NETWORK_NAME_MAX, check_name
from overt.engine.model.overlay import FIRST_VNI, MAX_VNI, OVERLAY_PROVIDER, OVERLAY_PROVIDER_ID
from overt.engine.model.status import NetworkUsage
from overt.engine.monitor.required_networks import judge_cluster
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref

MAX_VLAN = 4094
MAX_MTU = 65520


@dataclass
class NetworkInput:
    """What a client may set on a network; None leaves a field as it is."""

    name: str | None = None
    description: str | None = None
    data_center: Ref | None = None
    vlan_id: int | None = None
    clear_vlan: bool = False  # an explicit <vlan/> without an id: no VLAN
    mtu: int | None = None
    usages: list[str] | None = None
    stp: bool | None = None
    external_provider: Ref | None = None  # OVERLAY_PROVIDER: a VXLAN overlay


def _wants_overlay(data: NetworkInput) -> bool:
    provider = data.external_provider
    if provider is None:
        return False
    if provider.name != OVERLAY_PROVIDER and provider.id != OVERLAY_PROVIDER_ID:
        raise InvalidInput(f"network.external_provider names no provider this engine has; "
                           f"its overlay networks' provider is {OVERLAY_PROVIDER!r}")
    return True


async def _free_vni(session: AsyncSession) -> int:
    used = set((await session.execute(select(Network.vxlan_id).where(
        Network.vxlan_id.is_not(None)))).scalars())
    vni = FIRST_VNI
    while vni in used:
        vni += 1
    if vni > MAX_VNI:
        raise Conflict("Cannot add Network: every VXLAN network identifier is in use.")
    return vni


def _check_values(data: NetworkInput) -> list[str] | None:
    if data.vlan_id is not None and not 0 <= data.vlan_id <= MAX_VLAN:
        raise InvalidInput(f"network.vlan.id must be between 0 and {MAX_VLAN}, not {data.vlan_id}")
    if data.mtu is not None and data.mtu != 0 and not 68 <= data.mtu <= MAX_MTU:
        raise InvalidInput(f"network.mtu must be 0 (the default) or between 68 and {MAX_MTU}, "
                           f"not {data.mtu}")
    if data.usages is None:
        return None
    usages = []
    for usage in data.usages:
        try:
            usages.append(NetworkUsage(usage.strip().lower()).value)
        except ValueError:
            allowed = ", ".join(u.value for u in NetworkUsage)
            raise InvalidInput(f"network usage {usage!r} is not one of {allowed}") from None
    return sorted(set(usages), key=usages.index)


async def _name_taken(session: AsyncSession, dc_id: uuid.UUID, name: str,
                      other_than: uuid.UUID | None = None) -> bool:
    stmt = select(Network.id).where(Network.data_center_id == dc_id, Network.name == name)
    if other_than is not None:
        stmt = stmt.where(Network.id != other_than)
    return (await session.execute(stmt)).first() is not None


async def add_network(session: AsyncSession, data: NetworkInput, user: User) -> Network:
    name = check_name("network", data.name or "", max_length=NETWORK_NAME_MAX)
    usages = _check_values(data) or [NetworkUsage.VM.value]
    dc = await lookup.resolve(session, DataCenter, data.data_center, "network.data_center")
    if await _name_taken(session, dc.id, name):
        raise Conflict(f"Cannot add Network. The name {name!r} is already in use in data "
                       f"center {dc.name}.")
    overlay = _wants_overlay(data)
    if overlay and data.vlan_id is not None:
        raise InvalidInput(f"network {name!r} is an overlay ({OVERLAY_PROVIDER}): it has no VLAN")
    network = Network(id=uuid.uuid4(), name=name, description=data.description or "",
                      data_center_id=dc.id, vlan_id=data.vlan_id, mtu=data.mtu or 0,
                      usages=usages, bridge=name, stp=bool(data.stp),
                      vxlan_id=await _free_vni(session) if overlay else None)
    session.add(network)
    await session.flush()
    session.add(VnicProfile(id=uuid.uuid4(), name=name, network_id=network.id))
    audit.record(session, f"Network {name} was added to Data Center {dc.name} by "
                 f"{user.user_name}", code=audit.NETWORK_ADDED, data_center_id=dc.id,
                 user_id=user.id)
    return network


def is_management(network: Network) -> bool:
    return NetworkUsage.MANAGEMENT.value in network.usages


async def nics_using(session: AsyncSession, network_id: uuid.UUID) -> int:
    profiles = select(VnicProfile.id).where(VnicProfile.network_id == network_id)
    return await lookup.count(session, VmNic, VmNic.vnic_profile_id.in_(profiles))


async def update_network(session: AsyncSession, network_id: uuid.UUID, data: NetworkInput,
                         user: User) -> Network:
    """Name, VLAN and MTU are what hosts and guests are wired with: they change only while
    no VM NIC uses the network; the management network keeps its name and role."""
    network = await lookup.get(session, Network, network_id, for_update=True)
    usages = _check_values(data)
    if data.data_center is not None:
        dc = await lookup.resolve(session, DataCenter, data.data_center, "network.data_center")
        if dc.id != network.data_center_id:
            raise Conflict(f"Cannot edit Network {network.name}: a network cannot move to "
                           "another data center.")
    name = network.name
    if data.name is not None:
        name = check_name("network", data.name, max_length=NETWORK_NAME_MAX)
        if await _name_taken(session, network.data_center_id, name, other_than=network.id):
            raise Conflict(f"Cannot edit Network. The name {name!r} is already in use.")
    vlan_id = None if data.clear_vlan else (
        data.vlan_id if data.vlan_id is not None else network.vlan_id)
    mtu = data.mtu if data.mtu is not None else network.mtu
    if data.external_provider is not None and _wants_overlay(data) != (
            network.vxlan_id is not None):
        raise Conflict(f"Cannot edit Network {network.name}: its external provider cannot "
                       "change (add another network instead).")
    if network.vxlan_id is not None and vlan_id is not None:
        raise InvalidInput(f"network {network.name!r} is an overlay ({OVERLAY_PROVIDER}): it "
                           "has no VLAN")
    wiring_changes = name != network.name or vlan_id != network.vlan_id or mtu != network.mtu
    if is_management(network):
        if name != network.name:
            raise Conflict(f"Cannot rename {network.name}: it is the management network.")
        if usages is not None and NetworkUsage.MANAGEMENT.value not in usages:
            raise Conflict(f"Cannot edit Network {network.name}: it is the management network "
                           "and keeps its management role.")
    if wiring_changes:
        used = await nics_using(session, network.id)
        if used:
            raise Conflict(f"Cannot change the name, VLAN or MTU of Network {network.name}: "
                           f"{used} VM NIC(s) use it; remove them from the network first.")
    if name != network.name:
        await _rename_default_profile(session, network, name)
        network.name = network.bridge = name
    if vlan_id != network.vlan_id or mtu != network.mtu:
        # Hosts carry it as it was until it is re-synced (setupnetworks).
        for attachment in (await session.execute(select(HostNetworkAttachment).where(
                HostNetworkAttachment.network_id == network.id))).scalars():
            attachment.applied = False
    network.vlan_id, network.mtu = vlan_id, mtu
    if usages is not None:
        network.usages = usages
    if data.description is not None:
        network.description = data.description
    if data.stp is not None:
        network.stp = data.stp
    audit.record(session, f"Network {network.name} was updated by {user.user_name}",
                 code=audit.NETWORK_UPDATED, data_center_id=network.data_center_id,
                 user_id=user.id)
    return network


async def _rename_default_profile(session: AsyncSession, network: Network, name: str) -> None:
    profile = (await session.execute(select(VnicProfile).where(
        VnicProfile.network_id == network.id, VnicProfile.name == network.name))).scalars().first()
    if profile is not None:
        profile.name = name


async def remove_network(session: AsyncSession, network_id: uuid.UUID, user: User) -> None:
    network = await lookup.get(session, Network, network_id, for_update=True)
    if is_management(network):
        raise Conflict(f"Cannot remove Network {network.name}: it is the management network.")
    used = await nics_using(session, network.id)
    if used:
        raise Conflict(f"Cannot remove Network {network.name}: {used} VM NIC(s) use it; "
                       "remove them from the network first.")
    hosts = await lookup.count(session, HostNetworkAttachment,
                               HostNetworkAttachment.network_id == network.id)
    if hosts:
        raise Conflict(f"Cannot remove Network {network.name}: {hosts} host(s) carry it; "
                       "detach it from them first.")
    clusters = (await session.execute(select(ClusterNetwork.cluster_id).where(
        ClusterNetwork.network_id == network.id))).scalars().all()
    await session.execute(delete(ClusterNetwork).where(ClusterNetwork.network_id == network.id))
    await session.execute(delete(VnicProfile).where(
        VnicProfile.network_id == network.id))
    audit.record(session, f"Network {network.name} was removed by {user.user_name}",
                 code=audit.NETWORK_REMOVED, data_center_id=network.data_center_id,
                 user_id=user.id)
    await session.delete(network)
    await session.flush()
    for cluster_id in sorted(clusters):  # no longer required there
        await judge_cluster(session, await lookup.get(session, Cluster, cluster_id))
