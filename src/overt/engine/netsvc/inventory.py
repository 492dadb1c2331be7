"""What the network services publish, read from the engine's database: VM NICs (MAC, VM,
cluster) and host addresses on each managed network."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.tables import (
    Cluster,
    DataCenter,
    Host,
    HostNetworkAttachment,
    Network,
    Vm,
    VmNic,
    VnicProfile,
)


@dataclass(frozen=True, order=True)
class NicEntry:
    """A VM NIC on a managed network: it gets a fixed address and `vm.cluster.domain`."""

    network: str
    mac: str
    vm: str
    cluster: str
    nic: str


@dataclass(frozen=True, order=True)
class HostEntry:
    """A host's address (static attachment, or its own address) on a managed network."""

    network: str
    host: str
    cluster: str
    address: ipaddress.IPv4Address


@dataclass(frozen=True)
class Inventory:
    nics: tuple[NicEntry, ...]
    hosts: tuple[HostEntry, ...]
    networks: frozenset[str] = frozenset()  # the planned networks the database has


def _ipv4(value: str | None) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(value or "")
    except ValueError:
        return None


async def read_inventory(db: Database, networks: dict[str, str | None],
                         subnets: dict[str, ipaddress.IPv4Network]) -> Inventory:
    """NICs and hosts on the networks named in `networks` (name -> data center or None)."""
    async with db.transaction() as session:
        nets = (await session.execute(
            select(Network.id, Network.name, DataCenter.name)
            .join(DataCenter, DataCenter.id == Network.data_center_id))).all()
        wanted = {nid: name for nid, name, dc in nets
                  if name in networks and networks[name] in (None, dc)}
        nic_rows = (await session.execute(
            select(VnicProfile.network_id, VmNic.mac, Vm.name, Cluster.name, VmNic.name)
            .join(VmNic, VmNic.vnic_profile_id == VnicProfile.id)
            .join(Vm, Vm.id == VmNic.vm_id).join(Cluster, Cluster.id == Vm.cluster_id)
            .where(VnicProfile.network_id.in_(wanted)))).all()
        host_rows = (await session.execute(
            select(Host.name, Host.address, Cluster.name, Cluster.id)
            .join(Cluster, Cluster.id == Host.cluster_id))).all()
        attachments = (await session.execute(
            select(HostNetworkAttachment.network_id, HostNetworkAttachment.address, Host.name,
                   Cluster.name)
            .join(Host, Host.id == HostNetworkAttachment.host_id)
            .join(Cluster, Cluster.id == Host.cluster_id)
            .where(HostNetworkAttachment.network_id.in_(wanted)))).all()
    nics = sorted(NicEntry(wanted[nid], mac.lower(), vm, cluster, nic)
                  for nid, mac, vm, cluster, nic in nic_rows)
    hosts: dict[tuple[str, str], HostEntry] = {}
    for nid, address, host, cluster in attachments:
        ip = _ipv4(address)
        if ip is not None:
            hosts[(wanted[nid], host)] = HostEntry(wanted[nid], host, cluster, ip)
    for host, address, cluster, _ in host_rows:
        ip = _ipv4(address)
        for net in set(wanted.values()):
            if ip is not None and ip in subnets[net] and (net, host) not in hosts:
                hosts[(net, host)] = HostEntry(net, host, cluster, ip)
    return Inventory(nics=tuple(nics), hosts=tuple(sorted(hosts.values())),
                     networks=frozenset(wanted.values()))
