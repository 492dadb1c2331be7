"""Host networks from the SDK to the switch: the engine and two lab nodes running
`overt node` (fully managed, through the broker). `setupnetworks` puts a VLAN network on
each node's trunk NIC, with the connectivity check; the node's Open vSwitch carries it,
the attachment comes in sync, the host's NICs show it; retagged behind the engine's back it
is out of sync until re-synchronised; a VM NIC on the network is an OVS access port with the
network's tag; a removed attachment is gone from the node."""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from overt.lab.lab import Lab
from overt.lab.topology import LabSpec, Net, Topology
from overt.system.daemons import ensure_libvirtd
from tests.conftest import require_root
from tests.support.broker import Broker
from tests.support.cli import overt
from tests.support.demo import wait_until
from tests.support.managed import ManagedSite

pytestmark = [pytest.mark.lab, pytest.mark.amqp, pytest.mark.slow]

SPEC = LabSpec(nodes=2, prefix=os.environ.get("OVERT_TEST_LAB_PREFIX", "ovtst"),
               address_block=os.environ.get("OVERT_TEST_LAB_BLOCK", "10.211.0.0/16"))
ARGS = ["--prefix", SPEC.prefix]
MIB = 2**20


@dataclass
class EngineLab:
    lab: Lab
    site: ManagedSite


@pytest.fixture(scope="module")
def engine_lab(rabbitmq: Broker) -> Iterator[EngineLab]:
    require_root()
    ensure_libvirtd()
    built = overt("lab", "up", "--nodes", str(SPEC.nodes), *ARGS,
                  "--address-block", SPEC.address_block)
    assert built.returncode == 0, built.stdout + built.stderr
    lab = Lab(Topology(SPEC))
    engine_address = lab.topology.engine_address()
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-netw-lab-"))
    base.chmod(0o755)
    site = ManagedSite(base, f"sqlite:///{base}/engine.db", rabbitmq.engine_url_now(),
                       rabbitmq.admin_url)
    site.engine("engine", OVERT_PUBLIC_ADDRESS=str(engine_address),
                OVERT_BROKER_NODE_URL=f"amqp://{engine_address}:5672",
                OVERT_BROKER_ALLOW_PLAIN="1")
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        site.wait_for_api()
        for node in ("node1", "node2"):
            argv = [sys.executable, "-m", "overt", "lab", "exec", *ARGS, node, "--",
                    sys.executable, "-m", "overt", "node", "--bus", "amqp",
                    "--engine-url", f"https://{engine_address}:{site.gateway_port}",
                    "--engine-ca-file", str(site.ca_file), "--libvirt-uri", "qemu:///system",
                    "--data-dir", str(base / node / "data"),
                    "--storage-dir", str(base / node / "images"), "--heartbeat-interval", "1"]
            with site.log(node).open("ab") as log:
                nodes.append(subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env={**os.environ, "OVERT_NODE_ANNOUNCE_INTERVAL_S": "0.5"}))
        yield EngineLab(lab, site)
    finally:
        for process in nodes:
            process.send_signal(signal.SIGTERM)
        for process in nodes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        site.stop_all()
        site.print_logs()
        overt("lab", "down", *ARGS)
        shutil.rmtree(base, ignore_errors=True)


def _on(lab: Lab, node: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(lab.exec_argv(node, list(argv)), capture_output=True, text=True,
                          check=False, timeout=60)


def _in_sync(host: sdk.services.HostService, network_id: str) -> bool:
    return any(a.network.id == network_id and a.in_sync
               for a in host.network_attachments_service().list())


def test_setup_networks_from_the_sdk_reaches_the_nodes_switch(engine_lab: EngineLab) -> None:
    lab, site = engine_lab.lab, engine_lab.site
    conn = site.connect()
    try:
        site.approve_all(conn, 2)
        system = conn.system_service()
        by_address = {str(lab.topology.host(n).address(Net.MANAGEMENT)): n
                      for n in ("node1", "node2")}
        hosts = {by_address[h.address]: h for h in system.hosts_service().list()}
        network = system.networks_service().add(types.Network(
            name="lab100", data_center=types.DataCenter(name="Default"),
            vlan=types.Vlan(id=100)))
        cluster = system.clusters_service().list(search="name=Default")[0]
        system.clusters_service().cluster_service(cluster.id).networks_service().add(
            types.Network(id=network.id, required=False))
        block = ipaddress.IPv4Network(SPEC.address_block).network_address
        addresses = {"node1": str(block + 100 * 256 + 1), "node2": str(block + 100 * 256 + 2)}
        for node, host in hosts.items():
            service = system.hosts_service().host_service(host.id)
            assert "guest0" in [n.name for n in service.nics_service().list()]
            service.setup_networks(modified_network_attachments=[types.NetworkAttachment(
                network=types.Network(id=network.id), host_nic=types.HostNic(name="guest0"),
                ip_address_assignments=[types.IpAddressAssignment(
                    assignment_method=types.BootProtocol.STATIC,
                    ip=types.Ip(address=addresses[node], netmask="255.255.255.0"))])],
                check_connectivity=True, connectivity_timeout=30)
        for node, host in hosts.items():
            service = system.hosts_service().host_service(host.id)
            wait_until(lambda s=service: _in_sync(s, network.id), 90,  # type: ignore[misc]
                       f"the network to be in sync on {node}")
            assert _on(lab, node, "ovs-vsctl", "br-to-vlan", "lab100").stdout.strip() == "100"
            shown = _on(lab, node, "ip", "-4", "-o", "address", "show", "lab100").stdout
            assert f"{addresses[node]}/24" in shown
            nics = {n.name: n for n in service.nics_service().list()}
            assert "lab100" in nics and nics["lab100"].ip.address == addresses[node]
        # The VLAN carries traffic between the nodes over the trunk.
        ping = _on(lab, "node1", "ping", "-c", "2", "-W", "2", addresses["node2"])
        assert ping.returncode == 0, ping.stdout

        # Retagged on node1's switch behind the engine's back: the node's report shows the
        # attachment out of sync with the difference; re-synchronising puts the tag back.
        node1 = system.hosts_service().host_service(hosts["node1"].id)
        assert _on(lab, "node1", "ovs-vsctl", "set", "port", "lab100", "tag=101").returncode == 0
        node1.refresh()
        drifted = wait_until(lambda: next((a for a in node1.network_attachments_service().list()
                                           if a.network.id == network.id and not a.in_sync),
                                          None), 60, "the attachment to be out of sync")
        vlan = next(c for c in drifted.reported_configurations if c.name == "vlan")
        assert (vlan.expected_value, vlan.actual_value, vlan.in_sync) == ("100", "101", False)
        node1.setup_networks(synchronized_network_attachments=[
            types.NetworkAttachment(id=drifted.id)], check_connectivity=True,
            connectivity_timeout=30)
        wait_until(lambda: _in_sync(node1, network.id), 60, "the attachment to be in sync again")
        assert _on(lab, "node1", "ovs-vsctl", "br-to-vlan", "lab100").stdout.strip() == "100"
        assert node1.get().status == types.HostStatus.UP

        # A VM NIC on the network: an OVS access port with the network's tag.
        vms = system.vms_service()
        vm = vms.add(types.Vm(name="lab-vlan-vm", cluster=types.Cluster(name="Default"),
                              template=types.Template(name="Blank"), memory=128 * MIB,
                              placement_policy=types.VmPlacementPolicy(
                                  hosts=[types.Host(id=hosts["node1"].id)])))
        profile = system.networks_service().network_service(
            network.id).vnic_profiles_service().list()[0]
        vms.vm_service(vm.id).nics_service().add(types.Nic(
            name="nic1", vnic_profile=types.VnicProfile(id=profile.id)))
        vms.vm_service(vm.id).start()
        running = wait_until(
            lambda: (v := vms.vm_service(vm.id).get()).status == types.VmStatus.UP and v,
            120, "the VM to be up")
        node = next(n for n, h in hosts.items() if h.id == running.host.id)
        virt = libvirt.open(lab.hypervisor(node).uri)
        try:
            xml = ET.fromstring(virt.lookupByUUIDString(vm.id).XMLDesc(0))
        finally:
            virt.close()
        iface = xml.find("./devices/interface")
        assert iface is not None
        assert iface.find("virtualport").get("type") == "openvswitch"  # type: ignore[union-attr]
        assert [t.get("id") for t in iface.findall("./vlan/tag")] == ["100"]
        port = iface.find("target").get("dev")  # type: ignore[union-attr]
        assert _on(lab, node, "ovs-vsctl", "get", "port", str(port), "tag").stdout.strip() \
            == "100"
        vms.vm_service(vm.id).stop()
        wait_until(lambda: vms.vm_service(vm.id).get().status == types.VmStatus.DOWN, 60,
                   "the VM to be down")

        # Taking the network off node2 removes it from node2's switch.
        node2 = system.hosts_service().host_service(hosts["node2"].id)
        attachment = next(a for a in node2.network_attachments_service().list()
                          if a.network.id == network.id)
        node2.setup_networks(removed_network_attachments=[
            types.NetworkAttachment(id=attachment.id)], check_connectivity=True,
            connectivity_timeout=30)
        wait_until(lambda: _on(lab, "node2", "ovs-vsctl", "br-exists", "lab100").returncode == 2,
                   60, "the network to leave node2's switch")
        assert not node2.network_attachments_service().list() or all(
            a.network.id != network.id for a in node2.network_attachments_service().list())
    finally:
        conn.close()


def _layout(service: sdk.services.HostService) -> list[tuple[str, str, str | None]]:
    return sorted((a.network.id, a.host_nic.name if a.host_nic else "",
                   a.ip_address_assignments[0].ip.address
                   if a.ip_address_assignments and a.ip_address_assignments[0].ip else None)
                  for a in service.network_attachments_service().list())


def test_a_setup_that_cuts_the_host_off_is_rolled_back_by_the_node(
        engine_lab: EngineLab) -> None:
    lab, site = engine_lab.lab, engine_lab.site
    conn = site.connect()
    try:
        site.approve_all(conn, 2)
        system = conn.system_service()
        mgmt_address = str(lab.topology.host("node2").address(Net.MANAGEMENT))
        host = next(h for h in system.hosts_service().list() if h.address == mgmt_address)
        service = system.hosts_service().host_service(host.id)
        management = system.networks_service().list(search="name=ovirtmgmt")[0]
        before = _layout(service)
        # The management network on its NIC with an address in the wrong subnet: the node
        # can no longer reach the engine (nor the engine the node) until it undoes it.
        service.setup_networks(modified_network_attachments=[types.NetworkAttachment(
            network=types.Network(id=management.id), host_nic=types.HostNic(name="mgmt0"),
            ip_address_assignments=[types.IpAddressAssignment(
                assignment_method=types.BootProtocol.STATIC,
                ip=types.Ip(address="192.0.2.66", netmask="255.255.255.0"))])],
            check_connectivity=True, connectivity_timeout=5)
        wait_until(lambda: "192.0.2.66/24" in _on(lab, "node2", "ip", "-4", "-o", "address",
                                                  "show", "ovirtmgmt").stdout,
                   30, "the wrong address to be applied on node2")
        cut_off = _on(lab, "node2", "ip", "-4", "-o", "address", "show", "ovirtmgmt").stdout
        assert f"{mgmt_address}/" not in cut_off, cut_off
        events = system.events_service()
        rolled_back = wait_until(
            lambda: next((e for e in events.list()
                          if "rolled back" in e.description and e.host is not None
                          and e.host.id == host.id), None),
            120, "an event saying the network change was rolled back")
        assert host.name in rolled_back.description
        assert rolled_back.severity == types.LogSeverity.ERROR
        # The node put its own address back by itself; the host is up, nothing changed.
        shown = _on(lab, "node2", "ip", "-4", "-o", "address", "show", "ovirtmgmt").stdout
        assert f"{mgmt_address}/" in shown and "192.0.2.66" not in shown, shown
        wait_until(lambda: service.get().status == types.HostStatus.UP, 90,
                   "node2 to be up again")
        assert _layout(service) == before
    finally:
        conn.close()


def test_a_bond_from_the_sdk_is_an_ovs_bond_carrying_a_tagged_network(
        engine_lab: EngineLab) -> None:
    lab, site = engine_lab.lab, engine_lab.site
    conn = site.connect()
    slaves = ("bnda", "bndb")
    try:
        for slave in slaves:  # two more NICs on node1 to bond
            made = _on(lab, "node1", "ip", "link", "add", slave, "type", "veth", "peer", "name",
                       f"{slave}p")
            assert made.returncode == 0, made.stderr
        site.approve_all(conn, 2)
        system = conn.system_service()
        mgmt_address = str(lab.topology.host("node1").address(Net.MANAGEMENT))
        host = next(h for h in system.hosts_service().list() if h.address == mgmt_address)
        service = system.hosts_service().host_service(host.id)
        service.refresh()
        wait_until(lambda: set(slaves) <= {n.name for n in service.nics_service().list()}, 60,
                   "node1 to report the NICs to bond")
        network = system.networks_service().add(types.Network(
            name="lab300", data_center=types.DataCenter(name="Default"),
            vlan=types.Vlan(id=300)))
        cluster = system.clusters_service().list(search="name=Default")[0]
        system.clusters_service().cluster_service(cluster.id).networks_service().add(
            types.Network(id=network.id, required=False))
        service.setup_networks(
            modified_bonds=[types.HostNic(name="bond0", bonding=types.Bonding(
                options=[types.Option(name="mode", value="1")],
                slaves=[types.HostNic(name=s) for s in slaves]))],
            modified_network_attachments=[types.NetworkAttachment(
                network=types.Network(id=network.id), host_nic=types.HostNic(name="bond0"))],
            check_connectivity=True, connectivity_timeout=30)
        wait_until(lambda: _in_sync(service, network.id), 90, "lab300 to be in sync on node1")
        switch = {"bond_mode": _on(lab, "node1", "ovs-vsctl", "get", "port", "bond0",
                                   "bond_mode").stdout.strip().strip('"'),
                  "bridge": _on(lab, "node1", "ovs-vsctl", "port-to-br", "bond0").stdout.strip(),
                  "parent": _on(lab, "node1", "ovs-vsctl", "br-to-parent", "lab300").stdout.strip(),
                  "vlan": _on(lab, "node1", "ovs-vsctl", "br-to-vlan", "lab300").stdout.strip()}
        assert switch == {"bond_mode": "active-backup", "bridge": "ob-bond0",
                          "parent": "ob-bond0", "vlan": "300"}
        members = _on(lab, "node1", "ovs-vsctl", "get", "port", "bond0", "interfaces").stdout
        assert members.count("-") >= 8  # two interface uuids
        bond = next(n for n in service.nics_service().list() if n.name == "bond0")
        assert sorted(s.name for s in bond.bonding.slaves) == sorted(slaves)

        attachment = next(a for a in service.network_attachments_service().list()
                          if a.network.id == network.id)
        service.setup_networks(removed_bonds=[types.HostNic(id=bond.id)],
                               removed_network_attachments=[
                                   types.NetworkAttachment(id=attachment.id)],
                               check_connectivity=True, connectivity_timeout=30)
        wait_until(lambda: _on(lab, "node1", "ovs-vsctl", "br-exists", "ob-bond0").returncode
                   == 2, 60, "the bond's bridge to leave node1's switch")
        assert _on(lab, "node1", "ovs-vsctl", "br-exists", "lab300").returncode == 2
        # Gone from the engine's definition at once, from the node's report once it reports.
        wait_until(lambda: "bond0" not in {n.name for n in service.nics_service().list()}, 60,
                   "bond0 to leave node1's NICs")
    finally:
        for slave in slaves:
            _on(lab, "node1", "ip", "link", "del", slave)
        conn.close()


def _ping_counts(output: str) -> tuple[int, int]:
    """(transmitted, received) from ping's summary line."""
    for line in output.splitlines():
        if "packets transmitted" in line:
            sent, received = line.split(",")[:2]
            return int(sent.split()[0]), int(received.split()[0])
    raise AssertionError(f"no ping summary in {output!r}")


def _rx_packets(lab: Lab, node: str, link: str) -> int:
    return int(_on(lab, node, "cat", f"/sys/class/net/{link}/statistics/rx_packets").stdout)


def test_traffic_over_an_active_backup_bond_survives_losing_the_active_slave(
        engine_lab: EngineLab) -> None:
    """node1's bond1 (two veth cables to node2, whose ends share one Linux bridge there)
    carries an untagged network with a static address; while node1 pings node2 over it,
    the active slave's cable goes down: the bond fails over with few packets lost, the node
    reports it by itself, and the engine shows the other slave active and the cut one
    down."""
    lab, site = engine_lab.lab, engine_lab.site
    conn = site.connect()
    ns1, ns2 = (lab.topology.host(n).namespace for n in ("node1", "node2"))
    slaves = ("bfa", "bfb")
    try:
        for slave in slaves:  # a cable from node1 to node2
            made = subprocess.run(["ip", "link", "add", "name", slave, "netns", ns1, "type",
                                   "veth", "peer", "name", f"{slave}p", "netns", ns2],
                                  capture_output=True, text=True, check=False)
            assert made.returncode == 0, made.stderr
        for argv in (["ip", "link", "add", "bfbr", "type", "bridge"],
                     ["ip", "link", "set", "bfap", "master", "bfbr"],
                     ["ip", "link", "set", "bfbp", "master", "bfbr"],
                     ["ip", "address", "add", "203.0.113.2/24", "dev", "bfbr"],
                     ["ip", "link", "set", "bfap", "up"], ["ip", "link", "set", "bfbp", "up"],
                     ["ip", "link", "set", "bfbr", "up"]):
            done = _on(lab, "node2", *argv)
            assert done.returncode == 0, (argv, done.stderr)
        site.approve_all(conn, 2)
        system = conn.system_service()
        mgmt_address = str(lab.topology.host("node1").address(Net.MANAGEMENT))
        host = next(h for h in system.hosts_service().list() if h.address == mgmt_address)
        service = system.hosts_service().host_service(host.id)
        service.refresh()
        wait_until(lambda: set(slaves) <= {n.name for n in service.nics_service().list()}, 60,
                   "node1 to report the NICs to bond")
        network = system.networks_service().add(types.Network(
            name="labfo", data_center=types.DataCenter(name="Default")))  # untagged
        cluster = system.clusters_service().list(search="name=Default")[0]
        system.clusters_service().cluster_service(cluster.id).networks_service().add(
            types.Network(id=network.id, required=False))
        service.setup_networks(
            modified_bonds=[types.HostNic(name="bond1", bonding=types.Bonding(
                options=[types.Option(name="mode", value="active-backup")],
                slaves=[types.HostNic(name=s) for s in slaves]))],
            modified_network_attachments=[types.NetworkAttachment(
                network=types.Network(id=network.id), host_nic=types.HostNic(name="bond1"),
                ip_address_assignments=[types.IpAddressAssignment(
                    assignment_method=types.BootProtocol.STATIC,
                    ip=types.Ip(address="203.0.113.1", netmask="255.255.255.0"))])],
            check_connectivity=True, connectivity_timeout=30)
        wait_until(lambda: _in_sync(service, network.id), 90, "labfo to be in sync on node1")
        assert _on(lab, "node1", "ovs-vsctl", "br-to-parent", "labfo").stdout.strip() \
            == "ob-bond1"  # untagged, on the bond's own switch

        def bond() -> types.HostNic:
            return next(n for n in service.nics_service().list() if n.name == "bond1")
        wait_until(lambda: bond().bonding.active_slave is not None, 60,
                   "the engine to show bond1's active slave")
        active = bond().bonding.active_slave.name
        standby = next(s for s in slaves if s != active)
        assert {p.name: p.value for p in bond().properties}["in_sync"] == "true"

        before = _rx_packets(lab, "node2", f"{active}p")
        ping = subprocess.Popen(lab.exec_argv("node1", ["ping", "-n", "-i", "0.2", "-w", "6",
                                                        "203.0.113.2"]),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_until(lambda: _rx_packets(lab, "node2", f"{active}p") >= before + 5, 10,
                       "the pings to flow over the active slave")
            cut = _on(lab, "node2", "ip", "link", "set", f"{active}p", "down")
            assert cut.returncode == 0, cut.stderr
            output, _ = ping.communicate(timeout=30)
        finally:
            if ping.poll() is None:
                ping.kill()
        sent, received = _ping_counts(output)
        assert sent >= 20 and sent - received <= 10, output  # at most ~2 s of pings lost
        assert _rx_packets(lab, "node2", f"{standby}p") >= 10  # they went on over the other

        # The node sees its bond change and reports by itself: no refresh needed.
        wait_until(lambda: bond().bonding.active_slave.name == standby, 60,
                   f"the engine to show {standby} active")
        nics = {n.name: n for n in service.nics_service().list()}
        assert (nics[active].status, nics[standby].status) == (types.NicStatus.DOWN,
                                                               types.NicStatus.UP)
        shown = _on(lab, "node1", "ovs-appctl", "bond/show", "bond1").stdout
        assert f"member {active}: disabled" in shown and f"member {standby}: enabled" in shown

        attachment = next(a for a in service.network_attachments_service().list()
                          if a.network.id == network.id)
        service.setup_networks(removed_bonds=[types.HostNic(name="bond1")],
                               removed_network_attachments=[
                                   types.NetworkAttachment(id=attachment.id)])
        wait_until(lambda: _on(lab, "node1", "ovs-vsctl", "br-exists", "ob-bond1").returncode
                   == 2, 60, "bond1's bridge to leave node1's switch")
    finally:
        for slave in slaves:
            _on(lab, "node1", "ip", "link", "del", slave)
        _on(lab, "node2", "ip", "link", "del", "bfbr")
        conn.close()
