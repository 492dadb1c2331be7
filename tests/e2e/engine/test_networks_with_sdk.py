"""Logical networks through the official SDK: STP, cluster attachment (required or not),
vNIC profiles (port mirroring, network filter, custom properties), MAC pools and the MACs
VM NICs get from their cluster's pool; and the refusals (4xx, nothing changed)."""

from __future__ import annotations

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

MIB = 2**20


def _refused(code: int, call: object, *args: object, **kwargs: object) -> sdk.Error:
    with pytest.raises(sdk.Error) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    assert caught.value.code == code, caught.value
    return caught.value


def test_network_carries_stp_usages_and_vlan(connection: sdk.Connection) -> None:
    networks = connection.system_service().networks_service()
    network = networks.add(types.Network(
        name="vlan100", data_center=types.DataCenter(name="Default"), vlan=types.Vlan(id=100),
        stp=True, mtu=1400, usages=[types.NetworkUsage.VM, types.NetworkUsage.DISPLAY]))
    try:
        got = networks.network_service(network.id).get()
        assert (got.vlan.id, got.mtu, got.stp) == (100, 1400, True)
        assert set(got.usages) == {types.NetworkUsage.VM, types.NetworkUsage.DISPLAY}
        updated = networks.network_service(network.id).update(types.Network(stp=False))
        assert updated.stp is False
        _refused(400, networks.add, types.Network(
            name="badvlan", data_center=types.DataCenter(name="Default"),
            vlan=types.Vlan(id=4095)))
        _refused(409, networks.add, types.Network(
            name="vlan100", data_center=types.DataCenter(name="Default")))
        assert [n.name for n in networks.list() if n.name in ("badvlan", "vlan100")] == [
            "vlan100"]
    finally:
        networks.network_service(network.id).remove()


def test_cluster_networks_attach_require_detach(connection: sdk.Connection) -> None:
    system = connection.system_service()
    cluster = system.clusters_service().list(search="name=Default")[0]
    cluster_nets = system.clusters_service().cluster_service(cluster.id).networks_service()
    assert [n.name for n in cluster_nets.list()] == ["ovirtmgmt"]  # always attached
    network = system.networks_service().add(types.Network(
        name="storage20", data_center=types.DataCenter(name="Default"), vlan=types.Vlan(id=20)))
    try:
        attached = cluster_nets.add(types.Network(id=network.id, required=False))
        assert (attached.name, attached.required) == ("storage20", False)
        listed = {n.name: n.required for n in cluster_nets.list()}
        assert listed == {"ovirtmgmt": True, "storage20": False}
        _refused(409, cluster_nets.add, types.Network(id=network.id))
        cluster_nets.network_service(network.id).update(types.Network(required=True))
        assert cluster_nets.network_service(network.id).get().required is True
        mgmt = next(n for n in cluster_nets.list() if n.name == "ovirtmgmt")
        _refused(409, cluster_nets.network_service(mgmt.id).remove)
        cluster_nets.network_service(network.id).remove()
        assert [n.name for n in cluster_nets.list()] == ["ovirtmgmt"]
        cluster_nets.add(types.Network(id=network.id))
    finally:
        system.networks_service().network_service(network.id).remove()  # detaches it too
    assert "storage20" not in [n.name for n in system.networks_service().list()]
    assert [n.name for n in cluster_nets.list()] == ["ovirtmgmt"]


def test_vnic_profiles_with_filter_mirroring_and_properties(connection: sdk.Connection) -> None:
    system = connection.system_service()
    filters = {f.name: f for f in system.network_filters_service().list()}
    assert "vdsm-no-mac-spoofing" in filters and "clean-traffic" in filters
    network = system.networks_service().add(types.Network(
        name="mirror", data_center=types.DataCenter(name="Default"), vlan=types.Vlan(id=30)))
    net_service = system.networks_service().network_service(network.id)
    try:
        profile = net_service.vnic_profiles_service().add(types.VnicProfile(
            name="tap", port_mirroring=True,
            network_filter=types.NetworkFilter(id=filters["clean-traffic"].id),
            custom_properties=[types.CustomProperty(name="queues", value="2")]))
        got = system.vnic_profiles_service().profile_service(profile.id).get()
        assert (got.name, got.port_mirroring, got.network.id) == ("tap", True, network.id)
        assert got.network_filter.id == filters["clean-traffic"].id
        assert [(p.name, p.value) for p in got.custom_properties] == [("queues", "2")]
        assert sorted(p.name for p in net_service.vnic_profiles_service().list()) == [
            "mirror", "tap"]
        other = system.vnic_profiles_service().add(types.VnicProfile(
            name="plain", network=types.Network(id=network.id)))
        assert other.port_mirroring is False and other.network_filter is None
        updated = system.vnic_profiles_service().profile_service(other.id).update(
            types.VnicProfile(port_mirroring=True, description="now mirrored"))
        assert (updated.port_mirroring, updated.description) == (True, "now mirrored")
        _refused(409, net_service.vnic_profiles_service().add, types.VnicProfile(name="tap"))
        _refused(400, net_service.vnic_profiles_service().add, types.VnicProfile(
            name="badfilter", network_filter=types.NetworkFilter(
                id="00000000-0000-0000-0000-000000000001")))
        system.vnic_profiles_service().profile_service(other.id).remove()
        assert sorted(p.name for p in net_service.vnic_profiles_service().list()) == [
            "mirror", "tap"]
    finally:
        net_service.remove()


def test_mac_pools_and_nic_macs_from_the_clusters_pool(connection: sdk.Connection) -> None:
    system = connection.system_service()
    pools = system.mac_pools_service()
    default = [p for p in pools.list() if p.default_pool]
    assert [p.name for p in default] == ["Default"]
    _refused(400, pools.add, types.MacPool(name="bad", ranges=[
        types.Range(from_="02:00:00:00:00:10", to="02:00:00:00:00:01")]))
    _refused(400, pools.add, types.MacPool(name="bad", ranges=[
        types.Range(from_="not-a-mac", to="02:00:00:00:00:01")]))
    _refused(409, pools.mac_pool_service(default[0].id).remove)
    pool = pools.add(types.MacPool(name="small", description="two addresses", ranges=[
        types.Range(from_="02:1a:00:00:00:01", to="02:1a:00:00:00:02")]))
    assert [(r.from_, r.to) for r in pool.ranges] == [("02:1a:00:00:00:01",
                                                       "02:1a:00:00:00:02")]
    clusters = system.clusters_service()
    cluster = clusters.add(types.Cluster(name="macs", data_center=types.DataCenter(
        name="Default"), mac_pool=types.MacPool(id=pool.id)))
    cluster_service = clusters.cluster_service(cluster.id)
    assert cluster_service.get().mac_pool.id == pool.id
    vm = system.vms_service().add(types.Vm(
        name="macvm", cluster=types.Cluster(id=cluster.id),
        template=types.Template(name="Blank"), memory=128 * MIB))
    nics = system.vms_service().vm_service(vm.id).nics_service()
    mgmt = next(p for p in system.vnic_profiles_service().list() if p.name == "ovirtmgmt")
    try:
        first = nics.add(types.Nic(name="nic1", vnic_profile=types.VnicProfile(id=mgmt.id)))
        second = nics.add(types.Nic(name="nic2", vnic_profile=types.VnicProfile(id=mgmt.id)))
        assert sorted([first.mac.address, second.mac.address]) == [
            "02:1a:00:00:00:01", "02:1a:00:00:00:02"]
        error = _refused(409, nics.add, types.Nic(name="nic3"))  # the pool is exhausted
        assert "no free MAC" in str(error)
        _refused(400, nics.add, types.Nic(name="nic3", mac=types.Mac(
            address="02:1b:00:00:00:05")))  # outside the pool
        nics.nic_service(second.id).remove()
        _refused(409, nics.add, types.Nic(name="nic3", mac=types.Mac(
            address=first.mac.address)))  # a duplicate
        third = nics.add(types.Nic(name="nic3", mac=types.Mac(address="02:1a:00:00:00:02")))
        assert third.mac.address == "02:1a:00:00:00:02"
        assert sorted(n.name for n in nics.list()) == ["nic1", "nic3"]
        _refused(409, pools.mac_pool_service(pool.id).remove)  # the cluster uses it
        pools.mac_pool_service(pool.id).update(types.MacPool(ranges=[
            types.Range(from_="02:1a:00:00:00:01", to="02:1a:00:00:00:03")]))
        fourth = nics.add(types.Nic(name="nic4"))
        assert fourth.mac.address == "02:1a:00:00:00:03"
    finally:
        system.vms_service().vm_service(vm.id).remove()


def test_an_overlay_network_is_one_of_the_built_in_vxlan_provider(
        connection: sdk.Connection) -> None:
    """oVirt's way to an overlay (an external provider's network), on Overt's own VXLAN
    provider; it has no VLAN, and a provider the engine does not have is refused."""
    networks = connection.system_service().networks_service()
    default = types.DataCenter(name="Default")
    network = networks.add(types.Network(
        name="overlay1", data_center=default,
        external_provider=types.OpenStackNetworkProvider(name="overt-vxlan")))
    try:
        got = networks.network_service(network.id).get()
        assert got.external_provider.name == "overt-vxlan" and got.vlan is None
        _refused(400, networks.network_service(network.id).update,
                 types.Network(vlan=types.Vlan(id=300)))
        _refused(400, networks.add, types.Network(
            name="overlay2", data_center=default, vlan=types.Vlan(id=300),
            external_provider=types.OpenStackNetworkProvider(name="overt-vxlan")))
        _refused(400, networks.add, types.Network(
            name="overlay3", data_center=default,
            external_provider=types.OpenStackNetworkProvider(name="ovirt-provider-ovn")))
        assert networks.network_service(network.id).get().vlan is None
        assert not [n for n in networks.list() if n.name in ("overlay2", "overlay3")]
        plain = next(n for n in networks.list() if n.name == "ovirtmgmt")
        assert plain.external_provider is None
    finally:
        networks.network_service(network.id).remove()
