"""A host's network attachments through the official SDK: `setupnetworks` records what the
host must carry (and hands it to a job for the node), refuses bad layouts with a 4xx and
changes nothing then; `commitnetconfig` is a job too. (The node's side is in the lab tests.)"""

from __future__ import annotations

import asyncio
import uuid

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.tables import Cluster, Host, HostBond
from overt.engine.model.status import HostStatus
from tests.support.engine import RunningEngine

NICS = [{"name": "eth0", "mac": "52:54:00:00:00:01", "addresses": ["192.0.2.10/24"],
         "bridge": False, "speed_mbps": 1000, "mtu": 1500},
        {"name": "guest0", "mac": "52:54:00:00:00:02", "addresses": [], "bridge": False,
         "speed_mbps": 10000, "mtu": 9000},
        {"name": "eth1", "mac": "52:54:00:00:00:03", "addresses": [], "bridge": False,
         "speed_mbps": 1000, "mtu": 1500},
        {"name": "eth2", "mac": "52:54:00:00:00:04", "addresses": [], "bridge": False,
         "speed_mbps": 1000, "mtu": 1500}]


def _refused(code: int, call: object, *args: object, **kwargs: object) -> sdk.Error:
    with pytest.raises(sdk.Error) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    assert caught.value.code == code, caught.value
    return caught.value


def _host(engine: RunningEngine, name: str) -> str:
    """A host row as enrollment leaves it, with the NICs its node reported."""
    async def insert() -> uuid.UUID:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                cluster = (await session.execute(select(Cluster).where(
                    Cluster.name == "Default"))).scalar_one()
                host = Host(id=uuid.uuid4(), name=name, address=f"{name}.example",
                            cluster_id=cluster.id, status=HostStatus.UP.value,
                            capabilities={"nics": NICS})
                session.add(host)
                return host.id
        finally:
            await db.dispose()
    return str(asyncio.run(insert()))


def _attachment(network: str, nic: str, address: str | None = None,
                netmask: str = "255.255.255.0") -> types.NetworkAttachment:
    assignments = None
    if address is not None:
        assignments = [types.IpAddressAssignment(
            assignment_method=types.BootProtocol.STATIC,
            ip=types.Ip(address=address, netmask=netmask, version=types.IpVersion.V4))]
    return types.NetworkAttachment(network=types.Network(name=network),
                                   host_nic=types.HostNic(name=nic),
                                   ip_address_assignments=assignments)


def _layout(service: sdk.services.HostService) -> list[tuple[str, str, str | None]]:
    rows = []
    for a in service.network_attachments_service().list():
        ip = a.ip_address_assignments[0].ip.address if a.ip_address_assignments else None
        rows.append((a.network.id, a.host_nic.name, ip))
    return sorted(rows)


def test_setup_networks_records_attachments_and_refuses_bad_layouts(
        connection: sdk.Connection, api_engine: RunningEngine) -> None:
    system = connection.system_service()
    host_id = _host(api_engine, f"netnode-{uuid.uuid4().hex[:6]}")
    host = system.hosts_service().host_service(host_id)
    nics = {n.name: n for n in host.nics_service().list()}
    assert (nics["guest0"].mtu, nics["eth0"].mtu) == (9000, 1500)
    cluster = system.clusters_service().list(search="name=Default")[0]
    cluster_nets = system.clusters_service().cluster_service(cluster.id).networks_service()
    networks = system.networks_service()
    dc = types.DataCenter(name="Default")
    v100 = networks.add(types.Network(name="hv100", data_center=dc, vlan=types.Vlan(id=100)))
    v200 = networks.add(types.Network(name="hv200", data_center=dc, vlan=types.Vlan(id=200),
                                      mtu=9000))
    plain = networks.add(types.Network(name="hplain", data_center=dc))
    networks.add(types.Network(name="houtside", data_center=dc,
                                         vlan=types.Vlan(id=300)))
    for network in (v100, v200, plain):
        cluster_nets.add(types.Network(id=network.id, required=False))

    host.setup_networks(modified_network_attachments=[
        _attachment("ovirtmgmt", "eth0"), _attachment("hv100", "guest0", "10.9.100.1"),
        _attachment("hv200", "guest0")], check_connectivity=True, connectivity_timeout=30)
    mgmt_id = next(n.id for n in networks.list() if n.name == "ovirtmgmt")
    expected = sorted([(mgmt_id, "eth0", None), (v100.id, "guest0", "10.9.100.1"),
                       (v200.id, "guest0", None)])
    assert _layout(host) == expected
    listed = host.network_attachments_service().list()
    assert all(a.in_sync is False for a in listed)  # not applied until the node says so
    assert {a.host_nic.id for a in listed} >= {nics["guest0"].id, nics["eth0"].id}

    bad: list[tuple[int, list[types.NetworkAttachment], str]] = [
        (400, [_attachment("houtside", "guest0")], "not attached to cluster"),
        (400, [_attachment("hv100", "wlan9")], "not a NIC of host"),
        (400, [_attachment("hplain", "eth0")], "two networks without a VLAN"),
        (400, [_attachment("hv200", "eth0")], "MTU 9000"),
        (400, [_attachment("hv100", "guest0", "10.9.100.300")], "10.9.100.300"),
        (400, [_attachment("hv100", "guest0", "10.9.100.1", netmask="255.0.255.0")], ""),
    ]
    for code, modified, words in bad:
        error = _refused(code, host.setup_networks, modified_network_attachments=modified)
        assert words in str(error)
    mgmt_attachment = next(a for a in host.network_attachments_service().list()
                           if a.network.id == mgmt_id)
    error = _refused(409, host.setup_networks, removed_network_attachments=[
        types.NetworkAttachment(id=mgmt_attachment.id)])
    assert "management network" in str(error)
    _refused(409, networks.network_service(v100.id).remove)  # a host carries it
    assert _layout(host) == expected  # the refusals changed nothing

    moved = next(a for a in host.network_attachments_service().list()
                 if a.network.id == v200.id)
    host.setup_networks(removed_network_attachments=[types.NetworkAttachment(id=moved.id)],
                        modified_network_attachments=[
                            _attachment("hv100", "guest0", "10.9.100.2")])
    assert _layout(host) == sorted([(mgmt_id, "eth0", None),
                                    (v100.id, "guest0", "10.9.100.2")])
    # IPv4 by DHCP (recorded as such, with no address of the engine's own) and a static
    # IPv6 address: one assignment per family.
    host.setup_networks(modified_network_attachments=[types.NetworkAttachment(
        network=types.Network(name="hv100"), host_nic=types.HostNic(name="guest0"),
        ip_address_assignments=[
            types.IpAddressAssignment(assignment_method=types.BootProtocol.DHCP),
            types.IpAddressAssignment(
                assignment_method=types.BootProtocol.STATIC,
                ip=types.Ip(address="2001:DB8:100::7", netmask="64",
                            version=types.IpVersion.V6))])])
    dhcp = next(a for a in host.network_attachments_service().list()
                if a.network.id == v100.id)
    v4, v6 = dhcp.ip_address_assignments
    assert (v4.assignment_method, v4.ip) == (types.BootProtocol.DHCP, None)
    assert (v6.assignment_method, v6.ip.address, v6.ip.netmask, v6.ip.version) == (
        types.BootProtocol.STATIC, "2001:db8:100::7", "64", types.IpVersion.V6)
    for assignment, words in (
            (types.IpAddressAssignment(assignment_method=types.BootProtocol.STATIC, ip=types.Ip(
                address="fe80::7", netmask="64", version=types.IpVersion.V6)), "fe80::7"),
            (types.IpAddressAssignment(assignment_method=types.BootProtocol.POLY_DHCP_AUTOCONF,
                                       ip=types.Ip(version=types.IpVersion.V6)),
             "IPv6 assignment_method"),
            (types.IpAddressAssignment(assignment_method=types.BootProtocol.STATIC, ip=types.Ip(
                address="2001:db8::1", version=types.IpVersion.V6)), "prefix length")):
        error = _refused(400, host.setup_networks, modified_network_attachments=[
            types.NetworkAttachment(network=types.Network(name="hv100"),
                                    host_nic=types.HostNic(name="guest0"),
                                    ip_address_assignments=[assignment])])
        assert words in str(error)
    assert v100.id in {a.network.id for a in host.network_attachments_service().list()
                       if a.ip_address_assignments and len(a.ip_address_assignments) == 2}
    # DHCPv6: both families by DHCP, told apart by their version.
    host.setup_networks(modified_network_attachments=[types.NetworkAttachment(
        network=types.Network(name="hv100"), host_nic=types.HostNic(name="guest0"),
        ip_address_assignments=[
            types.IpAddressAssignment(assignment_method=types.BootProtocol.DHCP),
            types.IpAddressAssignment(assignment_method=types.BootProtocol.DHCP,
                                      ip=types.Ip(version=types.IpVersion.V6))])])
    dhcp = next(a for a in host.network_attachments_service().list()
                if a.network.id == v100.id)
    assert [(x.assignment_method, x.ip.version if x.ip else None)
            for x in dhcp.ip_address_assignments] == [(types.BootProtocol.DHCP, None),
                                                       (types.BootProtocol.DHCP,
                                                        types.IpVersion.V6)]
    host.commit_net_config()
    events = [e.description for e in system.events_service().list(max=30)]
    assert any("Network setup of host" in e for e in events)


def _reporting_host(engine: RunningEngine, name: str, cluster_id: str,
                    reported: list[dict[str, object]]) -> str:
    """An up host of `cluster_id` whose node reported carrying the networks `reported`."""
    async def insert() -> uuid.UUID:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                host = Host(id=uuid.uuid4(), name=name, address=f"{name}.example",
                            cluster_id=uuid.UUID(cluster_id), status=HostStatus.UP.value,
                            capabilities={"nics": NICS}, reported_networks=reported)
                session.add(host)
                return host.id
        finally:
            await db.dispose()
    return str(asyncio.run(insert()))


def test_required_networks_and_out_of_sync_attachments_as_the_sdk_reads_them(
        connection: sdk.Connection, api_engine: RunningEngine) -> None:
    system = connection.system_service()
    suffix = uuid.uuid4().hex[:6]
    cluster = system.clusters_service().add(types.Cluster(
        name=f"reqnet-{suffix}", data_center=types.DataCenter(name="Default")))
    cluster_nets = system.clusters_service().cluster_service(cluster.id).networks_service()
    dc = types.DataCenter(name="Default")
    blue = system.networks_service().add(types.Network(name=f"blue{suffix}", data_center=dc,
                                                       vlan=types.Vlan(id=410)))
    cluster_nets.add(types.Network(id=blue.id, required=False))
    # The node carries the network with another tag and MTU than the definition's.
    host_id = _reporting_host(api_engine, f"reqnet-{suffix}", cluster.id, [
        {"name": blue.name, "bridge": blue.name, "nic": "guest0", "vlan": 411, "mtu": 1400,
         "addresses": ["10.41.0.9/24"]}])
    host = system.hosts_service().host_service(host_id)
    host.setup_networks(modified_network_attachments=[
        _attachment(blue.name, "guest0", "10.41.0.1")])
    attachment = host.network_attachments_service().list()[0]
    assert attachment.in_sync is False
    reported = {c.name: c for c in attachment.reported_configurations}
    assert (reported["vlan"].expected_value, reported["vlan"].actual_value,
            reported["vlan"].in_sync) == ("410", "411", False)
    assert (reported["mtu"].expected_value, reported["mtu"].actual_value) == ("1500", "1400")
    assert (reported["ipv4_address"].expected_value,
            reported["ipv4_address"].actual_value) == ("10.41.0.1", "10.41.0.9")
    assert reported["ipv4_netmask"].in_sync is True
    one = host.network_attachments_service().attachment_service(attachment.id).get()
    assert [c.name for c in one.reported_configurations] == list(reported)
    # Out of sync is not missing: the host stays up.
    assert host.get().status == types.HostStatus.UP

    green = system.networks_service().add(types.Network(name=f"green{suffix}", data_center=dc,
                                                        vlan=types.Vlan(id=420)))
    cluster_nets.add(types.Network(id=green.id, required=True))
    got = host.get()
    assert (got.status, got.status_detail) == (types.HostStatus.NON_OPERATIONAL,
                                               "network_unreachable")
    events = [e.description for e in system.events_service().list(max=20)]
    assert any(f"networks are missing on host: '{green.name}'" in e for e in events)
    cluster_nets.network_service(green.id).update(types.Network(required=False))
    got = host.get()
    assert (got.status, got.status_detail) == (types.HostStatus.UP, None)
    cluster_nets.network_service(green.id).update(types.Network(required=True))
    assert host.get().status == types.HostStatus.NON_OPERATIONAL
    system.networks_service().network_service(green.id).remove()  # required nowhere now
    assert host.get().status == types.HostStatus.UP


def _bond(name: str, mode: str, *slaves: str) -> types.HostNic:
    return types.HostNic(name=name, bonding=types.Bonding(
        options=[types.Option(name="mode", value=mode)],
        slaves=[types.HostNic(name=s) for s in slaves]))


def test_a_bond_is_made_listed_carries_a_tagged_network_and_goes(
        connection: sdk.Connection, api_engine: RunningEngine) -> None:
    system = connection.system_service()
    host = system.hosts_service().host_service(
        _host(api_engine, f"bondnode-{uuid.uuid4().hex[:6]}"))
    suffix = uuid.uuid4().hex[:4]
    dc = types.DataCenter(name="Default")
    tagged = system.networks_service().add(types.Network(
        name=f"hb{suffix}", data_center=dc, vlan=types.Vlan(id=310)))
    cluster = system.clusters_service().list(search="name=Default")[0]
    system.clusters_service().cluster_service(cluster.id).networks_service().add(
        types.Network(id=tagged.id, required=False))

    plain, other = (system.networks_service().add(types.Network(
        name=f"hu{n}{suffix}", data_center=dc)) for n in (1, 2))
    for untagged in (plain, other):
        system.clusters_service().cluster_service(cluster.id).networks_service().add(
            types.Network(id=untagged.id, required=False))

    host.setup_networks(modified_bonds=[_bond("bond0", "1", "eth1", "eth2")],
                        modified_network_attachments=[_attachment(tagged.name, "bond0"),
                                                      _attachment(plain.name, "bond0")])
    nics = {n.name: n for n in host.nics_service().list()}
    bond = nics["bond0"]
    assert sorted(s.name for s in bond.bonding.slaves) == ["eth1", "eth2"]
    assert {o.name: o.value for o in bond.bonding.options} == {"mode": "1"}
    assert {s.id for s in bond.bonding.slaves} == {nics["eth1"].id, nics["eth2"].id}
    assert host.nics_service().nic_service(bond.id).get().name == "bond0"
    assert {(tagged.id, "bond0", None), (plain.id, "bond0", None)} <= set(_layout(host))

    bad: list[tuple[int, dict[str, object], str]] = [
        (400, {"modified_bonds": [_bond("bond1", "1", "guest0")]}, "at least two"),
        (400, {"modified_bonds": [_bond("bond1", "0", "guest0", "eth0")]}, "bonding mode"),
        (400, {"modified_bonds": [_bond("team0", "1", "guest0", "eth0")]}, "bond followed"),
        (400, {"modified_bonds": [_bond("bond1", "4", "eth1", "guest0")]}, "slave of both"),
        (400, {"modified_bonds": [_bond("bond1", "4", "eth9", "guest0")]}, "eth9"),
        (400, {"modified_network_attachments": [_attachment("ovirtmgmt", "eth1")]},
         "slave of bond0"),
        (400, {"modified_network_attachments": [_attachment("ovirtmgmt", "bond0")]},
         "cannot move onto bond"),
        (400, {"modified_network_attachments": [_attachment(plain.name, "bond0"),
                                                _attachment(other.name, "bond0")]},
         "two networks without a VLAN"),
        (409, {"removed_bonds": [types.HostNic(name="bond0")]}, "rides on it"),
    ]
    for code, kwargs, words in bad:
        error = _refused(code, host.setup_networks, **kwargs)
        assert words in str(error), (words, str(error))
    assert "bond0" in {n.name for n in host.nics_service().list()}  # refusals changed nothing

    # LACP, then gone with its network.
    host.setup_networks(modified_bonds=[_bond("bond0", "4", "eth1", "eth2")])
    bond = next(n for n in host.nics_service().list() if n.name == "bond0")
    assert {o.name: o.value for o in bond.bonding.options} == {"mode": "4"}
    attachment = next(a for a in host.network_attachments_service().list()
                      if a.network.id == tagged.id)
    untagged_attachment = next(a for a in host.network_attachments_service().list()
                               if a.network.id == plain.id)
    host.setup_networks(removed_bonds=[types.HostNic(id=bond.id)],
                        removed_network_attachments=[
                            types.NetworkAttachment(id=attachment.id),
                            types.NetworkAttachment(id=untagged_attachment.id)])
    assert "bond0" not in {n.name for n in host.nics_service().list()}
    assert tagged.id not in {a.network.id for a in host.network_attachments_service().list()}


def test_an_overlay_shares_a_nic_with_its_untagged_network(
        connection: sdk.Connection, api_engine: RunningEngine) -> None:
    """An overlay rides on the NIC's address (a routed tunnel), not on the NIC itself: it
    goes beside the NIC's untagged network, where a second untagged network may not."""
    system = connection.system_service()
    host_id = _host(api_engine, f"vxnode-{uuid.uuid4().hex[:6]}")
    host = system.hosts_service().host_service(host_id)
    cluster = system.clusters_service().list(search="name=Default")[0]
    cluster_nets = system.clusters_service().cluster_service(cluster.id).networks_service()
    networks = system.networks_service()
    overlay = networks.add(types.Network(
        name="hvx1", data_center=types.DataCenter(name="Default"),
        external_provider=types.OpenStackNetworkProvider(name="overt-vxlan")))
    cluster_nets.add(types.Network(id=overlay.id, required=False))
    host.setup_networks(modified_network_attachments=[
        _attachment("ovirtmgmt", "eth0"), _attachment("hvx1", "eth0")])
    mgmt_id = next(n.id for n in networks.list() if n.name == "ovirtmgmt")
    assert _layout(host) == sorted([(mgmt_id, "eth0", None), (overlay.id, "eth0", None)])
def _host_with_bonds(engine: RunningEngine, name: str, defined: dict[str, list[str]],
                     reported: list[dict[str, object]]) -> str:
    """An up host whose engine defines `defined` bonds (active-backup) and whose node
    reported the bonds `reported` on its switch."""
    async def insert() -> uuid.UUID:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                cluster = (await session.execute(select(Cluster).where(
                    Cluster.name == "Default"))).scalar_one()
                host = Host(id=uuid.uuid4(), name=name, address=f"{name}.example",
                            cluster_id=cluster.id, status=HostStatus.UP.value,
                            capabilities={"nics": NICS}, reported_bonds=reported)
                session.add(host)
                for bond, slaves in defined.items():
                    session.add(HostBond(id=uuid.uuid5(host.id, bond), host_id=host.id,
                                         name=bond, slaves=slaves, options={"mode": "1"}))
                return host.id
        finally:
            await db.dispose()
    return str(asyncio.run(insert()))


def test_the_nics_show_the_bonds_the_node_reports_with_active_slave_and_sync(
        connection: sdk.Connection, api_engine: RunningEngine) -> None:
    reported = [
        {"name": "bond0", "mode": "active-backup", "lacp": "off", "active_slave": "eth2",
         "slaves": [{"name": "eth1", "link_up": False}, {"name": "eth2", "link_up": True}]},
        {"name": "bond9", "mode": "balance-slb", "lacp": "off", "active_slave": None,
         "slaves": [{"name": "guest0", "link_up": True}, {"name": "eth0", "link_up": True}]}]
    host = connection.system_service().hosts_service().host_service(_host_with_bonds(
        api_engine, f"rbnode-{uuid.uuid4().hex[:6]}", {"bond0": ["eth1", "eth2"]}, reported))
    nics = {n.name: n for n in host.nics_service().list()}

    bond0 = nics["bond0"]
    assert bond0.bonding.active_slave.name == "eth2"
    assert bond0.bonding.active_slave.id == nics["eth2"].id
    assert sorted(s.name for s in bond0.bonding.slaves) == ["eth1", "eth2"]
    assert {p.name: p.value for p in bond0.properties} == {"in_sync": "true"}
    assert bond0.status == types.NicStatus.UP
    assert (nics["eth1"].status, nics["eth2"].status) == (types.NicStatus.DOWN,
                                                          types.NicStatus.UP)

    bond9 = nics["bond9"]  # made on the host behind the engine's back
    assert {o.name: o.value for o in bond9.bonding.options} == {"mode": "balance-slb"}
    assert bond9.bonding.active_slave is None
    assert {p.name: p.value for p in bond9.properties} == {
        "in_sync": "false", "expected_mode": "(none)", "reported_mode": "balance-slb",
        "expected_slaves": "(none)", "reported_slaves": "eth0,guest0"}
    assert host.nics_service().nic_service(bond9.id).get().bonding.slaves[0].name == "eth0"
