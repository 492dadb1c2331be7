"""802.1Q VLANs and a VXLAN overlay for real between two lab nodes, served by the engine's
network services: the agent's host networking makes each node's Open vSwitch carry the
networks on its guest NIC (the trunk between the nodes), and test guests whose NICs are
written as Overt writes them (an OVS access port with the network's tag) reach each other
in one VLAN and not across VLANs, with the tag seen on the trunk.

Layout (subnet S = the lab block's 10.x.100.0/24, shared by both VLANs on purpose, so only
the tag keeps them apart; the overlay is the next /24):
- node1: VLAN 100 with address S.1, where the engine's network services (`netsvc`: its
  dnsmasq for DHCP and DNS, its chronyd for NTP) answer; guest A in VLAN 100.
- node2: VLAN 100 without a host address; VLAN 200 with address S.3 and a plain DHCP
  server (S.150-S.199); guest B in VLAN 100, guest C in VLAN 200.
- overlay1 on both nodes: VXLAN (VNI 5001) between their management addresses; A and B
  have a second NIC on it.
The guests run commands through their command port (tests/support/guest_port.py), so what
they reach, resolve and were told by DHCP is seen from inside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID, seed
from overt.engine.db.tables import Cluster, DataCenter, Network, Vm, VmNic, VnicProfile
from overt.engine.netsvc.plan import ServicesPlan, parse_plan
from overt.engine.netsvc.service import NetworkServices
from overt.lab.guest import BOOT_MARKER, GuestImage
from overt.lab.guest.domain import overlay_disk
from overt.lab.lab import Lab
from overt.lab.topology import LabSpec, Net, Topology
from overt.node.hypervisor.domain_xml import OvertMetadata, domain_xml
from overt.protocol.host import VirtMode
from overt.protocol.networks import NetworkWiring, VxlanWiring
from overt.protocol.vm import DiskSpec, FileSource, NicSpec, VmSpec
from overt.system.daemons import ensure_libvirtd
from tests.conftest import require_root
from tests.support import schema
from tests.support.cli import overt
from tests.support.domains import wait_for_text
from tests.support.guest_port import GuestPort, with_command_port

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


VNI = 5001
OVERLAY_MACS = ("56:6f:64:00:01:0a", "56:6f:64:00:01:0b")


def _overlay_ip(index: int) -> str:
    return str(_subnet().network_address + 256 + index)  # the next /24


def _overlay(local: str, remotes: list[str], address_index: int | None) -> NetworkWiring:
    """overlay1: VXLAN between the nodes' management addresses, no VLAN trunk needed."""
    vxlan = VxlanWiring(vni=VNI, local=local, remotes=tuple(remotes))
    if address_index is None:
        return NetworkWiring(name="overlay1", bridge="overlay1", nic="ovirtmgmt", vxlan=vxlan)
    return NetworkWiring(name="overlay1", bridge="overlay1", nic="ovirtmgmt", vxlan=vxlan,
                         boot_protocol="static", address=f"{_overlay_ip(address_index)}/24")


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


def _guest(lab: Lab, node: str, image: GuestImage, state: Path, name: str,
           nics: list[NicSpec]) -> tuple[libvirt.virDomain, Path, GuestPort]:
    """A test guest with Overt's domain XML plus its command port (`state/NAME.sock`)."""
    disk = overlay_disk(image.qcow2_disk, state / f"{name}.qcow2")
    serial = state / f"{name}.log"
    spec = VmSpec(id=uuid.uuid4(), name=name, memory_mib=256, graphics=None,
                  serial_log=str(serial),
                  disks=(DiskSpec(id=uuid.uuid4(), source=FileSource(path=str(disk))),),
                  nics=tuple(nics))
    xml = with_command_port(domain_xml(spec, VirtMode.QEMU, OvertMetadata(spec.id, 1)),
                            state / f"{name}.sock")
    conn = libvirt.open(lab.hypervisor(node).uri)
    try:
        domain = conn.createXML(xml, 0)
    finally:
        conn.close()
    return domain, serial, GuestPort(state / f"{name}.sock")


def _nic(mac: str, network: str, vlan: int | None, name: str = "nic1") -> NicSpec:
    return NicSpec(id=uuid.uuid4(), name=name, mac=mac, bridge=network, vlan=vlan)


def _leased(serial: Path) -> str:
    wait_for_text(serial, "eth0 has address", timeout=90)
    found = re.search(r"eth0 has address (\S+)", serial.read_text(errors="replace"))
    assert found is not None
    return found.group(1)


def _lease_options(serial: Path) -> dict[str, str]:
    """What the guest's DHCP client was told with its eth0 lease (its console says)."""
    wait_for_text(serial, "eth0 lease dns=", timeout=30)
    line = re.search(r"eth0 lease (.*)", serial.read_text(errors="replace"))
    assert line is not None
    return dict(item.split("=", 1) for item in line.group(1).split())


def _pings(lab: Lab, node: str, address: str) -> bool:
    return _on(lab, node, "ping", "-c", "2", "-W", "2", address).returncode == 0


def _tap(domain: libvirt.virDomain, mac: str) -> str:
    """The host-side tap device of the guest's NIC with `mac`."""
    found = re.search(rf"<mac address='{mac}'/>.*?<target dev='([^']+)'", domain.XMLDesc(),
                      re.S)
    assert found is not None, domain.XMLDesc()
    return found.group(1)


class Capture:
    """tcpdump -e on one link (in the root namespace or a lab node), until stopped."""

    def __init__(self, argv_prefix: list[str], link: str, bpf: str) -> None:
        self.process = subprocess.Popen(
            [*argv_prefix, "tcpdump", "-e", "-n", "-l", "-i", link, bpf],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        assert self.process.stderr is not None
        started = ""
        while "listening on" not in started:  # tcpdump says so once its socket is bound
            assert time.monotonic() < deadline, f"tcpdump did not start: {started}"
            started += self.process.stderr.readline()

    def stop(self) -> str:
        self.process.terminate()
        out, _ = self.process.communicate(timeout=10)
        return out


class EngineServices:
    """The engine's network services (`overt engine netsvc`: its dnsmasq and chronyd) on
    its own event loop, its daemons in a lab node's namespaces; the database is an engine
    database (SQLite) holding the VMs whose NICs it serves."""

    def __init__(self, db_path: Path, plan: ServicesPlan, state_dir: Path,
                 wrap: list[str]) -> None:
        self.db = Database(f"sqlite:///{db_path}")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.services = NetworkServices(self.db, plan, state_dir, wrap=wrap)
        self._call(self.services.start())

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def stop(self) -> None:
        self._call(self.services.stop())
        self._call(self.db.dispose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


async def _engine_records(db_path: Path, vms: dict[str, str]) -> None:
    """The engine's records: data center, cluster, network vlan100 with its profile, and
    one VM per entry of `vms` (name -> MAC) with a NIC on it."""
    db = Database(f"sqlite:///{db_path}")
    await seed(db)
    async with db.transaction() as session:
        dc = (await session.execute(select(DataCenter))).scalars().first()
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert dc is not None and cluster is not None
        net = Network(id=uuid.uuid4(), name="vlan100", data_center_id=dc.id, bridge="vlan100",
                      vlan_id=100, usages=["vm"])
        session.add(net)
        await session.flush()
        profile = VnicProfile(id=uuid.uuid4(), name="vlan100", network_id=net.id)
        session.add(profile)
        for name, mac in vms.items():
            vm_id = uuid.uuid4()
            session.add(Vm(id=vm_id, name=name, cluster_id=cluster.id,
                           template_id=BLANK_TEMPLATE_ID, memory_mib=256))
            await session.flush()
            session.add(VmNic(vm_id=vm_id, name="nic1", mac=mac, vnic_profile_id=profile.id))
    await db.dispose()


def _engine_plan(lab: Lab) -> ServicesPlan:
    """VLAN 100 served from node1's address there; the management network too, so the
    nodes can take their time from the engine's NTP."""
    mgmt = lab.topology.subnets[Net.MANAGEMENT]
    node1 = lab.topology.host("node1").address(Net.MANAGEMENT)
    return parse_plan({
        "domain": "lab", "upstream_dns": [], "refresh_s": 3600, "ntp": True,
        "networks": [
            {"name": "vlan100", "interface": "vlan100", "subnet": str(_subnet()),
             "address": _ip(1), "dhcp_range": f"{_ip(100)}-{_ip(149)}",
             "reserved_range": f"{_ip(10)}-{_ip(49)}"},
            {"name": "ovirtmgmt", "interface": "ovirtmgmt", "subnet": str(mgmt),
             "address": str(node1), "dhcp_range": f"{mgmt.network_address + 200}-"
             f"{mgmt.network_address + 220}",
             "reserved_range": f"{mgmt.network_address + 180}-{mgmt.network_address + 199}"},
        ]})


def _node_chrony(lab: Lab, node: str, server: str, state: Path) -> Path:
    """A chronyd on `node` whose only source is `server`; it never sets the clock (`-x`:
    the lab's nodes share the machine's). Returns its command socket."""
    directory = state / f"chrony-{node}"
    directory.mkdir(mode=0o700)
    sock = directory / "chronyd.sock"
    conf = directory / "chrony.conf"
    conf.write_text(f"server {server} iburst minpoll -2 maxpoll 0\nport 0\ncmdport 0\n"
                    f"bindcmdaddress {sock}\npidfile {state / f'chronyd-{node}.pid'}\n")
    started = _on(lab, node, "chronyd", "-x", "-u", "root", "-f", str(conf))
    assert started.returncode == 0, started.stderr
    return sock


def _chrony_source(lab: Lab, node: str, sock: Path, timeout: float = 60) -> str:
    """The line of `chronyc sources` for the source chronyd selected (`^*`)."""
    deadline = time.monotonic() + timeout
    sources = ""
    while time.monotonic() < deadline:
        sources = _on(lab, node, "chronyc", "-h", str(sock), "-n", "sources").stdout
        chosen = [line for line in sources.splitlines() if line.startswith("^*")]
        if chosen:
            return chosen[0]
        time.sleep(0.5)
    raise AssertionError(f"{node}'s chronyd selected no source within {timeout} s:\n{sources}")


def _trunk(lab: Lab, node: str, net: Net) -> str:
    """The root namespace's end of `node`'s cable to `net`: the trunk between the switches."""
    return next(i.outer for i in lab.topology.host(node).interfaces if i.net is net)


def test_vms_in_one_vlan_reach_each_other_across_nodes_and_not_across_vlans(
        vlan_lab: tuple[Lab, Path], guest_image: GuestImage) -> None:
    lab, state = vlan_lab
    mgmt = {n: str(lab.topology.host(n).address(Net.MANAGEMENT)) for n in ("node1", "node2")}
    one = _apply(lab, "node1", state, [_wiring("vlan100", 100, 1),
                                       _overlay(mgmt["node1"], [mgmt["node2"]], 1)])
    two = _apply(lab, "node2", state, [_wiring("vlan100", 100, None),
                                       _wiring("vlan200", 200, 3),
                                       _overlay(mgmt["node2"], [mgmt["node1"]], 2)])
    assert one["carried"] == ["overlay1", "vlan100"]
    assert two["carried"] == ["overlay1", "vlan100", "vlan200"]
    # What the agent made: the trunk on an OVS bridge, one tagged port per network.
    ports = _on(lab, "node2", "ovs-vsctl", "list-ports", "ob-guest0").stdout.split()
    assert TRUNK in ports
    assert _on(lab, "node2", "ovs-vsctl", "br-to-vlan", "vlan200").stdout.strip() == "200"
    assert _on(lab, "node2", "ovs-vsctl", "get", "bridge", "ob-guest0",
               "datapath_type").stdout.strip() == "netdev"
    assert not _pings(lab, "node1", _ip(3)), "node2's VLAN 200 address is not in VLAN 100"
    # The overlay: a VXLAN device (VNI 5001, to the other node) as its bridge's port.
    vx = json.loads(_on(lab, "node2", "ip", "-d", "-j", "link", "show", "vx-overlay1").stdout)
    assert vx[0]["linkinfo"]["info_data"]["id"] == VNI and vx[0]["master"] == "overlay1"
    assert _pings(lab, "node2", _overlay_ip(1)), "node2 reaches node1 over the overlay"

    # VLAN 100 is served by the engine's network services (its DHCP, DNS and NTP), from
    # node1's address there; VLAN 200 by a plain dnsmasq on node2.
    macs = {"vlan-a": "56:6f:64:00:00:0a", "vlan-b": "56:6f:64:00:00:0b"}
    db_path = state / "engine.db"
    shutil.copyfile(schema.migrated_sqlite(), db_path)
    asyncio.run(_engine_records(db_path, macs))
    engine = EngineServices(db_path, _engine_plan(lab), state / "netsvc",
                            lab.exec_argv("node1", []))
    try:
        _run_guests(lab, state, guest_image, macs, mgmt)
    finally:
        engine.stop()

    # Taking the networks away removes what the agent made, and only that.
    gone = _apply(lab, "node2", state, [])
    assert gone["removed"] == ["overlay1", "vlan100", "vlan200"]
    assert _on(lab, "node2", "ovs-vsctl", "br-exists", "vlan200").returncode == 2
    assert _on(lab, "node2", "ip", "link", "show", "vx-overlay1").returncode != 0
    assert _on(lab, "node2", "ip", "link", "show", "ovirtmgmt").returncode == 0


def _run_guests(lab: Lab, state: Path, guest_image: GuestImage, macs: dict[str, str],
                mgmt: dict[str, str]) -> None:
    _dhcp(lab, "node2", "vlan200", 150, 199, state)
    chrony = _node_chrony(lab, "node2", mgmt["node1"], state)
    started: list[tuple[libvirt.virDomain, Path, GuestPort]] = []
    try:
        for node, name, nics in (
                ("node1", "vlan-a", [_nic(macs["vlan-a"], "vlan100", 100),
                                     _nic(OVERLAY_MACS[0], "overlay1", None, "nic2")]),
                ("node2", "vlan-b", [_nic(macs["vlan-b"], "vlan100", 100),
                                     _nic(OVERLAY_MACS[1], "overlay1", None, "nic2")]),
                ("node2", "vlan-c", [_nic("56:6f:64:00:00:0c", "vlan200", 200)])):
            started.append(_guest(lab, node, guest_image, state, name, nics))
        (_, a_log, a_port), (_, b_log, b_port), (c, c_log, c_port) = started
        for log in (a_log, b_log, c_log):
            wait_for_text(log, BOOT_MARKER, timeout=60)
        a_ip, b_ip, c_ip = _leased(a_log), _leased(b_log), _leased(c_log)
        # A and B have the fixed addresses the engine reserved for their NICs, B's across
        # the trunk from node1; the lease names the engine as DNS and NTP server.
        assert {a_ip, b_ip} == {_ip(10), _ip(11)}
        for name, log in (("vlan-a", a_log), ("vlan-b", b_log)):
            assert _lease_options(log) == {"dns": _ip(1), "domain": "lab", "ntp": _ip(1),
                                           "hostname": name}
        assert 150 <= int(ipaddress.IPv4Address(c_ip)) - int(_subnet().network_address) < 200
        # libvirt made each guest's port an access port with its network's tag.
        vnet_tags = _on(lab, "node2", "ovs-vsctl", "--format=json", "--columns=name,tag",
                        "list", "port").stdout
        tags = {row[0]: row[1] for row in json.loads(vnet_tags)["data"]}
        assert sorted(t for n, t in tags.items() if str(n).startswith("vnet")) == [100, 200]
        for port in (a_port, b_port, c_port):
            port.wait_ready()

        # Inside guest A: B's name resolves through the engine's DNS (the lease's resolver).
        looked_up = a_port.run("nslookup vlan-b.default.lab")
        assert looked_up.status == 0 and b_ip in looked_up.output.split("Name:")[-1], \
            looked_up.output
        # A pings B by name; on the trunk between the switches (node2's cable to the lab's
        # guest network) every frame of it carries tag 100, and guest C's port (VLAN 200)
        # sees none of them.
        trunk = Capture([], _trunk(lab, "node2", Net.GUEST), "icmp or arp or (vlan and (icmp or arp))")
        at_c = Capture(lab.exec_argv("node2", []), _tap(c, "56:6f:64:00:00:0c"), "icmp or arp")
        pinged = a_port.run("ping -c 3 -i 0.2 -W 2 vlan-b.default.lab", timeout=20)
        on_trunk, seen_by_c = trunk.stop(), at_c.stop()
        assert pinged.status == 0 and "3 packets received" in pinged.output, pinged.output
        echoes = [line for line in on_trunk.splitlines() if "ICMP echo" in line]
        assert any(f"{a_ip} > {b_ip}: ICMP echo request" in line for line in echoes), on_trunk
        assert any(f"{b_ip} > {a_ip}: ICMP echo reply" in line for line in echoes), on_trunk
        assert all("vlan 100" in line and "ethertype 802.1Q" in line for line in echoes), \
            on_trunk
        assert a_ip not in seen_by_c and b_ip not in seen_by_c, seen_by_c
        # The same subnet in both VLANs: only the tags keep them apart.
        assert c_port.run(f"ping -c 2 -W 2 {a_ip}").status != 0, "VLAN 200 reached VLAN 100"
        assert _pings(lab, "node1", b_ip), "node1 should reach guest B on node2 in VLAN 100"
        assert not _pings(lab, "node1", c_ip), "VLAN 200 must not be reachable from VLAN 100"

        # The overlay between the nodes: A (node1) and B (node2) on their second NICs reach
        # each other; on the management cable the frames travel in VXLAN with its VNI.
        assert a_port.run(f"ip addr add {_overlay_ip(10)}/24 dev eth1").status == 0
        assert b_port.run(f"ip addr add {_overlay_ip(11)}/24 dev eth1").status == 0
        underlay = Capture([], _trunk(lab, "node2", Net.MANAGEMENT), "udp port 4789")
        over = a_port.run(f"ping -c 3 -i 0.2 -W 2 {_overlay_ip(11)}", timeout=20)
        tunnelled = underlay.stop()
        assert over.status == 0 and "3 packets received" in over.output, over.output
        assert f"VXLAN, flags [I] (0x08), vni {VNI}" in tunnelled, tunnelled
        assert f"{_overlay_ip(10)} > {_overlay_ip(11)}: ICMP echo request" in tunnelled
        assert f"{mgmt['node1']}." in tunnelled and f"{mgmt['node2']}.4789" in tunnelled

        # node2's clock follows the engine's NTP: its chronyd selected the engine's server.
        assert mgmt["node1"] in _chrony_source(lab, "node2", chrony)
    finally:
        for domain, _log, port in started:
            port.close()
            with contextlib.suppress(libvirt.libvirtError):
                domain.destroy()


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
