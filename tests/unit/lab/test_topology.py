import ipaddress

import pytest

from overt.lab.topology import MAX_NODES, LabError, LabSpec, Net, Role, Topology


def test_addresses_follow_the_block() -> None:
    topo = Topology(LabSpec(nodes=3, address_block="10.50.0.0/16"))
    assert topo.subnets[Net.MANAGEMENT] == ipaddress.IPv4Network("10.50.0.0/24")
    assert topo.subnets[Net.STORAGE] == ipaddress.IPv4Network("10.50.1.0/24")
    assert topo.subnets[Net.GUEST] == ipaddress.IPv4Network("10.50.2.0/24")
    assert str(topo.engine_address()) == "10.50.0.1"
    node2 = topo.host("node2")
    assert str(node2.address(Net.MANAGEMENT)) == "10.50.0.12"
    assert str(node2.address(Net.STORAGE)) == "10.50.1.12"
    assert str(topo.storage.address(Net.STORAGE)) == "10.50.1.2"


def test_storage_host_is_on_management_and_storage_only() -> None:
    topo = Topology(LabSpec(nodes=1))
    assert topo.storage.role is Role.STORAGE
    assert {i.net for i in topo.storage.interfaces} == {Net.MANAGEMENT, Net.STORAGE}
    assert {i.net for i in topo.host("node1").interfaces} == set(Net)


def test_nodes_have_distinct_stable_host_uuids() -> None:
    first = Topology(LabSpec(nodes=4))
    again = Topology(LabSpec(nodes=4))
    uuids = [h.host_uuid for h in first.hosts]
    assert len(set(uuids)) == len(uuids)
    assert uuids == [h.host_uuid for h in again.hosts]
    other_lab = Topology(LabSpec(nodes=4, prefix="other"))
    assert not set(uuids) & {h.host_uuid for h in other_lab.hosts}


def test_interface_names_fit_the_kernel_limit() -> None:
    topo = Topology(LabSpec(nodes=MAX_NODES, prefix="abcdef"))
    names = [i.outer + "x" for h in topo.hosts for i in h.interfaces]
    names += [topo.bridge(net) for net in Net]
    assert all(len(name) <= 15 for name in names)
    assert len(set(names)) == len(names)


def test_guest_dhcp_range_is_inside_the_guest_subnet() -> None:
    topo = Topology(LabSpec(nodes=1))
    low, high = topo.guest_dhcp_range()
    assert low in topo.subnets[Net.GUEST] and high in topo.subnets[Net.GUEST]
    assert topo.gateway(Net.GUEST).ip not in range(int(low), int(high) + 1)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (LabSpec(nodes=0), "--nodes must be between 1"),
        (LabSpec(nodes=MAX_NODES + 1), "--nodes must be between 1"),
        (LabSpec(nodes=1, prefix="Bad!"), "lab prefix"),
        (LabSpec(nodes=1, prefix="waytoolong"), "lab prefix"),
        (LabSpec(nodes=1, address_block="10.0.0.0/24"), "too small"),
        (LabSpec(nodes=1, address_block="banana"), "not an IPv4 network"),
    ],
)
def test_bad_specs_are_refused_with_a_reason(spec: LabSpec, message: str) -> None:
    with pytest.raises(LabError, match=message):
        Topology(spec)


def test_unknown_host_names_the_hosts_there_are() -> None:
    with pytest.raises(LabError, match="storage, node1, node2"):
        Topology(LabSpec(nodes=2)).host("node9")
