"""802.1Q VLANs for real between two lab nodes: the agent's host networking makes each
node's Open vSwitch carry the networks on its guest NIC (the trunk between the nodes), and
test guests whose NICs are written as Overt writes them (an OVS access port with the
network's tag) reach each other in one VLAN and not across VLANs.

Layout (subnet S = the lab block's 10.x.100.0/24, shared by both VLANs on purpose, so only
the tag keeps them apart):
- node1: VLAN 100 with address S.1 and a DHCP server (S.100-S.149); guest A in VLAN 100.
- node2: VLAN 100 without a host address; VLAN 200 with address S.3 and a DHCP server
  (S.150-S.199); guest B in VLAN 100, guest C in VLAN 200.
The test guest has no command channel, so "reach" is seen from the nodes' addresses in
each VLAN, and from the DHCP lease a guest gets from the other node.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from overt.lab.guest import BOOT_MARKER, GuestImage
from overt.lab.guest.domain import overlay_disk
from overt.lab.lab import Lab
from overt.lab.topology import LabSpec, Topology
from overt.node.hypervisor.domain_xml import OvertMetadata, domain_xml
from overt.protocol.host import VirtMode
from overt.protocol.networks import NetworkWiring
from overt.protocol.vm import DiskSpec, FileSource, NicSpec, VmSpec
from overt.system.daemons import ensure_libvirtd
from tests.conftest import require_root
from tests.support.cli import overt
from tests.support.domains import wait_for_text

pytestmark = [pytest.mark.lab, pytest.mark.vm, pytest.mark.slow]

SPEC = LabSpec(nodes=2, prefix=os.environ.get("OVERT_TEST_LAB_PREFIX", "ovtst"),
               address_block=os.environ.get("OVERT_TEST_LAB_BLOCK", "10.211.0.0/16"))
ARGS = ["--prefix", SPEC.prefix]
TRUNK = "guest0"  # each node's NIC on the lab's guest network: the trunk between the nodes

# Runs inside a node (`overt lab exec`): the agent's own host networking, as a command
# `host.setup_networks` runs it, on the node's switch.
APPLY = """
import asyncio, json, sys
from pathlib import Path
from overt.node.networks import HostNetworks
from overt.protocol.networks import NetworkWiring
wanted = [NetworkWiring.model_validate(w) for w in json.loads(sys.argv[2])]
result = asyncio.run(HostNetworks(Path(sys.argv[1])).setup(wanted, None))
print(result.model_dump_json())
"""


def _subnet() -> ipaddress.IPv4Network:
    block = ipaddress.IPv4Network(SPEC.address_block)
    return ipaddress.IPv4Network((int(block.network_address) + 100 * 256, 24))


def _ip(index: int) -> str:
    return str(_subnet().network_address + index)


def _on(lab: Lab, node: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(lab.exec_argv(node, list(argv)), capture_output=True, text=True,
                          check=False, timeout=timeout)


def _apply(lab: Lab, node: str, state_dir: Path, wanted: list[NetworkWiring]) -> dict[str, list[
        str]]:
    done = _on(lab, node, sys.executable, "-c", APPLY, str(state_dir / f"{node}.json"),
               json.dumps([w.model_dump(mode="json") for w in wanted]))
    assert done.returncode == 0, done.stderr
    result: dict[str, list[str]] = json.loads(done.stdout)
    return result


def _wiring(name: str, vlan: int, address_index: int | None) -> NetworkWiring:
    if address_index is None:
        return NetworkWiring(name=name, bridge=name, nic=TRUNK, vlan=vlan)
    return NetworkWiring(name=name, bridge=name, nic=TRUNK, vlan=vlan, boot_protocol="static",
                         address=f"{_ip(address_index)}/24")


def _dhcp(lab: Lab, node: str, port: str, first: int, last: int, state_dir: Path) -> None:
    started = _on(lab, node, "dnsmasq", "--port=0", "--bind-interfaces", f"--interface={port}",
                  f"--dhcp-range={_ip(first)},{_ip(last)},255.255.255.0,1h",
                  f"--dhcp-leasefile={state_dir / f'{node}-{port}.leases'}",
                  f"--pid-file={state_dir / f'{node}-{port}.pid'}", "--log-dhcp")
    assert started.returncode == 0, started.stderr


@pytest.fixture(scope="module")
def vlan_lab() -> Iterator[tuple[Lab, Path]]:
    require_root()
    ensure_libvirtd()
    built = overt("lab", "up", "--nodes", "2", *ARGS, "--address-block", SPEC.address_block)
    assert built.returncode == 0, built.stdout + built.stderr
    lab = Lab(Topology(SPEC))
    state = Path("/var/tmp/overt-tests") / f"vlan-{uuid.uuid4().hex[:8]}"
    state.mkdir(parents=True, mode=0o755)
    try:
        yield lab, state
    finally:
        for pidfile in state.glob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text()), 15)
        overt("lab", "down", *ARGS)
        shutil.rmtree(state, ignore_errors=True)


def _guest(lab: Lab, node: str, image: GuestImage, state: Path, name: str, network: str,
           vlan: int, mac: str) -> tuple[libvirt.virDomain, Path]:
    disk = overlay_disk(image.qcow2_disk, state / f"{name}.qcow2")
    serial = state / f"{name}.log"
    spec = VmSpec(id=uuid.uuid4(), name=name, memory_mib=256, graphics=None,
                  serial_log=str(serial),
                  disks=(DiskSpec(id=uuid.uuid4(), source=FileSource(path=str(disk))),),
                  nics=(NicSpec(id=uuid.uuid4(), mac=mac, bridge=network, vlan=vlan),))
    conn = libvirt.open(lab.hypervisor(node).uri)
    try:
        domain = conn.createXML(domain_xml(spec, VirtMode.QEMU, OvertMetadata(spec.id, 1)), 0)
    finally:
        conn.close()
    return domain, serial


def _leased(serial: Path) -> str:
    wait_for_text(serial, "eth0 has address", timeout=90)
    found = re.search(r"eth0 has address (\S+)", serial.read_text(errors="replace"))
    assert found is not None
    return found.group(1)


def _pings(lab: Lab, node: str, address: str) -> bool:
    return _on(lab, node, "ping", "-c", "2", "-W", "2", address).returncode == 0


def test_vms_in_one_vlan_reach_each_other_across_nodes_and_not_across_vlans(
        vlan_lab: tuple[Lab, Path], guest_image: GuestImage) -> None:
    lab, state = vlan_lab
    one = _apply(lab, "node1", state, [_wiring("vlan100", 100, 1)])
    two = _apply(lab, "node2", state, [_wiring("vlan100", 100, None),
                                       _wiring("vlan200", 200, 3)])
    assert one["carried"] == ["vlan100"] and two["carried"] == ["vlan100", "vlan200"]
    # What the agent made: the trunk on an OVS bridge, one tagged port per network.
    ports = _on(lab, "node2", "ovs-vsctl", "list-ports", "ob-guest0").stdout.split()
    assert TRUNK in ports
    assert _on(lab, "node2", "ovs-vsctl", "br-to-vlan", "vlan200").stdout.strip() == "200"
    assert _on(lab, "node2", "ovs-vsctl", "get", "bridge", "ob-guest0",
               "datapath_type").stdout.strip() == "netdev"
    assert not _pings(lab, "node1", _ip(3)), "node2's VLAN 200 address is not in VLAN 100"
    _dhcp(lab, "node1", "vlan100", 100, 149, state)
    _dhcp(lab, "node2", "vlan200", 150, 199, state)

    a, a_log = _guest(lab, "node1", guest_image, state, "vlan-a", "vlan100", 100,
                      "56:6f:64:00:00:0a")
    b, b_log = _guest(lab, "node2", guest_image, state, "vlan-b", "vlan100", 100,
                      "56:6f:64:00:00:0b")
    c, c_log = _guest(lab, "node2", guest_image, state, "vlan-c", "vlan200", 200,
                      "56:6f:64:00:00:0c")
    try:
        for log in (a_log, b_log, c_log):
            wait_for_text(log, BOOT_MARKER, timeout=60)
        a_ip, b_ip, c_ip = _leased(a_log), _leased(b_log), _leased(c_log)
        # B, on node2, got its address from node1's server in VLAN 100: across the trunk.
        assert 100 <= int(ipaddress.IPv4Address(b_ip)) - int(_subnet().network_address) < 150
        assert 100 <= int(ipaddress.IPv4Address(a_ip)) - int(_subnet().network_address) < 150
        assert 150 <= int(ipaddress.IPv4Address(c_ip)) - int(_subnet().network_address) < 200
        # libvirt made each guest's port an access port with its network's tag.
        vnet_tags = _on(lab, "node2", "ovs-vsctl", "--format=json", "--columns=name,tag",
                        "list", "port").stdout
        tags = {row[0]: row[1] for row in json.loads(vnet_tags)["data"]}
        assert sorted(t for n, t in tags.items() if str(n).startswith("vnet")) == [100, 200]
        assert _pings(lab, "node1", a_ip), "node1 should reach guest A in VLAN 100"
        assert _pings(lab, "node1", b_ip), "node1 should reach guest B on node2 in VLAN 100"
        assert _pings(lab, "node2", c_ip), "node2 should reach guest C in VLAN 200"
        # The same subnet in both VLANs: only the tags keep them apart.
        assert not _pings(lab, "node1", c_ip), "VLAN 200 must not be reachable from VLAN 100"
        assert not _pings(lab, "node2", b_ip), "VLAN 100 must not be reachable from VLAN 200"
        arp = _on(lab, "node1", "ip", "neigh", "show", c_ip).stdout
        assert "lladdr" not in arp, arp
    finally:
        for domain in (a, b, c):
            with contextlib.suppress(libvirt.libvirtError):
                domain.destroy()

    # Taking the networks away removes what the agent made, and only that.
    gone = _apply(lab, "node2", state, [])
    assert gone["removed"] == ["vlan100", "vlan200"]
    assert _on(lab, "node2", "ovs-vsctl", "br-exists", "vlan200").returncode == 2
    assert _on(lab, "node2", "ip", "link", "show", "ovirtmgmt").returncode == 0


# Runs inside a node: a change the engine does not confirm in time is rolled back by the
# agent; a confirmed one stays. Prints what the switch had after each phase.
ROLLBACK = """
import asyncio, json, subprocess, sys
from pathlib import Path
from overt.node.networks import HostNetworks
from overt.protocol.networks import NetworkWiring

def bridges():
    out = subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True).stdout
    return sorted(out.split())

async def main():
    nets = HostNetworks(Path(sys.argv[1]))
    wanted = [NetworkWiring.model_validate(w) for w in json.loads(sys.argv[2])]
    seen = {}
    await nets.setup(wanted, rollback_after_s=1.5)
    seen["applied"] = bridges()
    await asyncio.sleep(3)
    seen["unconfirmed"] = bridges()
    seen["pending_after_rollback"] = nets.rollback_pending
    await nets.setup(wanted, rollback_after_s=1.5)
    await nets.commit()
    await asyncio.sleep(3)
    seen["confirmed"] = bridges()
    print(json.dumps(seen))

asyncio.run(main())
"""


def test_an_unconfirmed_network_change_is_rolled_back_by_the_agent(
        vlan_lab: tuple[Lab, Path]) -> None:
    lab, state = vlan_lab
    _apply(lab, "node1", state, [_wiring("keep300", 300, None)])
    wanted = [_wiring("keep300", 300, None), _wiring("try301", 301, None)]
    done = _on(lab, "node1", sys.executable, "-c", ROLLBACK, str(state / "node1.json"),
               json.dumps([w.model_dump(mode="json") for w in wanted]))
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert "try301" in seen["applied"] and "keep300" in seen["applied"]
    assert "try301" not in seen["unconfirmed"] and "keep300" in seen["unconfirmed"]
    assert seen["pending_after_rollback"] is False
    assert "try301" in seen["confirmed"]
    carried = json.loads((state / "node1.json").read_text())
    assert sorted(carried) == ["keep300", "try301"]
