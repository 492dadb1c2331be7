"""The agent's own rollback of a network change, on real Linux bridges in a throwaway
network namespace: a static address that replaces the management address (the host is cut
off) is undone by itself when the engine does not confirm in time, the adopted bridge gets
its address back, a bridge the agent made goes, and a late confirmation fails instead of
passing for a kept change."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from overt.lab import netns
from tests.conftest import require_root

pytestmark = [pytest.mark.slow]

SCENARIO = r'''
import asyncio, json, sys, tempfile, time
from pathlib import Path
from overt.node.errors import NodeFailure
from overt.node.host_nics import link_addresses
from overt.node.networks import HostNetworks
from overt.protocol.networks import NetworkWiring

def addrs(link):
    found = link_addresses().get(link)
    return None if found is None else [a for a in found if not a.startswith("fe80:")]

async def main() -> None:
    nets = HostNetworks(Path(tempfile.mkdtemp()) / "networks.json")
    seen = {}
    wrong = [NetworkWiring(name="ovirtmgmt", bridge="mgmtbr", nic="mgmt0",
                           boot_protocol="static", address="198.51.100.7/24"),
             NetworkWiring(name="extra", bridge="extrabr", nic="data0", mtu=1400)]
    await nets.setup(wrong, rollback_after_s=float(sys.argv[1]))
    seen["applied"] = {k: addrs(k) for k in ("mgmtbr", "extrabr")}
    deadline = time.monotonic() + 30
    while nets.rollback_pending and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    seen["after"] = {k: addrs(k) for k in ("mgmtbr", "extrabr")}
    seen["state"] = json.loads(nets.state_file.read_text())
    try:
        await nets.commit()
        seen["late_commit"] = "kept"
    except NodeFailure as exc:
        seen["late_commit"] = exc.message
    # Confirmed in time, the same change stays (and a new setup clears the rollback mark).
    await nets.setup(wrong[:1], rollback_after_s=60)
    seen["committed"] = list((await nets.commit()).carried)
    seen["kept"] = addrs("mgmtbr")
    await nets.setup([], rollback_after_s=None)
    seen["detached"] = addrs("mgmtbr")
    await nets.close()
    print(json.dumps(seen))

asyncio.run(main())
'''


@pytest.fixture
def namespace() -> Iterator[str]:
    require_root()
    name = f"ovt-rb-{uuid.uuid4().hex[:8]}"
    netns.ensure_namespace(name)
    try:
        for argv in (["ip", "link", "set", "lo", "up"],
                     ["ip", "link", "add", "mgmt0", "type", "veth", "peer", "name", "mgmt0p"],
                     ["ip", "link", "add", "data0", "type", "veth", "peer", "name", "data0p"],
                     ["ip", "link", "add", "mgmtbr", "type", "bridge"],
                     ["ip", "link", "set", "mgmt0", "master", "mgmtbr"],
                     ["ip", "address", "add", "192.0.2.10/24", "dev", "mgmtbr"],
                     ["ip", "link", "set", "mgmtbr", "up"]):
            subprocess.run(["ip", "netns", "exec", name, *argv], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_an_unconfirmed_change_that_cuts_the_host_off_is_rolled_back(namespace: str) -> None:
    done = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", SCENARIO,
                           "0.5"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    # Applied: the wrong address replaced the management one; the agent made a new bridge.
    assert seen["applied"] == {"mgmtbr": ["198.51.100.7/24"], "extrabr": []}
    # Unconfirmed: the management bridge has its own address back, the new bridge is gone.
    assert seen["after"] == {"mgmtbr": ["192.0.2.10/24"], "extrabr": None}
    assert seen["state"] == {}
    assert "rolled back" in seen["late_commit"] and "0.5 s" in seen["late_commit"]
    # Confirmed in time, the change stays; detached again, the bridge's address returns.
    assert seen["committed"] == ["ovirtmgmt"]
    assert seen["kept"] == ["198.51.100.7/24"]
    assert seen["detached"] == ["192.0.2.10/24"]


DHCP_SCENARIO = r'''
import asyncio, json, tempfile
from pathlib import Path
from overt.node.networks import HostNetworks
from overt.protocol.networks import NetworkWiring

async def main() -> None:
    nets = HostNetworks(Path(tempfile.mkdtemp()) / "networks.json")
    await nets.setup([NetworkWiring(name="lan", bridge="lanbr", nic="data0",
                                    boot_protocol="dhcp", ipv6_boot_protocol="static",
                                    ipv6_address="2001:db8:7::5/64"),
                      NetworkWiring(name="auto", bridge="autobr", nic="mgmt0",
                                    ipv6_boot_protocol="autoconf")], rollback_after_s=None)
    reported = [r for r in await nets.report() if r.name == "lan"]
    conf = Path("/proc/sys/net/ipv6/conf/autobr")
    autoconf = [(conf / k).read_text().strip() for k in ("accept_ra", "autoconf")]
    pid_file = nets.state_file.parent / "dhcp" / "lanbr.pid"
    seen = {"reported": [list(r.addresses) for r in reported], "client": pid_file.exists(),
            "autoconf": autoconf}
    await nets.setup([], rollback_after_s=None)
    seen["client_after"] = pid_file.exists()
    print(json.dumps(seen))

asyncio.run(main())
'''


def test_networks_get_ipv4_by_dhcp_static_ipv6_and_ipv6_autoconf(namespace: str,
                                                             tmp_path: Path) -> None:
    server = f"{namespace}-srv"
    netns.ensure_namespace(server)
    dnsmasq = None
    try:
        def on_server(*argv: str) -> None:
            subprocess.run(["ip", "netns", "exec", server, *argv], check=True)
        subprocess.run(["ip", "netns", "exec", namespace, "ip", "link", "set", "data0p",
                        "netns", server], check=True)
        on_server("ip", "address", "add", "198.18.7.1/24", "dev", "data0p")
        on_server("ip", "link", "set", "data0p", "up")
        dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", server, "dnsmasq", "--keep-in-foreground", "--port=0",
             "--bind-interfaces", "--interface=data0p", "--dhcp-range=198.18.7.50,198.18.7.60",
             f"--dhcp-leasefile={tmp_path}/leases", f"--pid-file={tmp_path}/dnsmasq.pid",
             "--conf-file=/dev/null"], stderr=subprocess.DEVNULL)
        done = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c",
                               DHCP_SCENARIO], capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        [addresses] = seen["reported"]
        leased = [a for a in addresses if "." in a]
        assert len(leased) == 1 and leased[0].endswith("/24"), addresses
        assert 50 <= int(leased[0].split("/")[0].split(".")[-1]) <= 60
        assert [a for a in addresses if ":" in a] == ["2001:db8:7::5/64"]
        assert seen["client"] is True and seen["client_after"] is False
        assert seen["autoconf"] == ["2", "1"]  # addresses from router advertisements
    finally:
        if dnsmasq is not None:
            dnsmasq.terminate()
            dnsmasq.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", server], check=False)


DHCP6_SCENARIO = r'''
import asyncio, json, tempfile, time
from pathlib import Path
from overt.node.host_nics import link_addresses
from overt.node.networks import HostNetworks
from overt.protocol.networks import NetworkWiring

def global6(link):
    return [a for a in link_addresses().get(link, []) if ":" in a and not a.startswith("fe80:")]

async def main() -> None:
    nets = HostNetworks(Path(tempfile.mkdtemp()) / "networks.json")
    await nets.setup([NetworkWiring(name="lan6", bridge="lan6br", nic="data0",
                                    ipv6_boot_protocol="dhcp")], rollback_after_s=None)
    deadline = time.monotonic() + 30
    reported = []
    while time.monotonic() < deadline:
        reported = [list(r.addresses) for r in await nets.report() if r.name == "lan6"]
        if reported and any(":" in a for a in reported[0]):
            break
        await asyncio.sleep(0.2)
    pid_file = nets.state_file.parent / "dhcp" / "lan6br.pid6"
    seen = {"reported": reported, "client": pid_file.exists()}
    # Detached from the bridge (the bridge stays: it is the host's), the lease is released.
    nets.state_file.write_text(json.dumps({
        k: {**v, "adopted": True} for k, v in json.loads(nets.state_file.read_text()).items()}))
    await nets.setup([], rollback_after_s=None)
    seen["after"] = global6("lan6br")
    seen["client_after"] = pid_file.exists()
    print(json.dumps(seen))

asyncio.run(main())
'''


def test_a_network_gets_its_ipv6_address_by_dhcpv6(namespace: str, tmp_path: Path) -> None:
    server = f"{namespace}-srv"
    netns.ensure_namespace(server)
    dnsmasq = None
    try:
        def on_server(*argv: str) -> None:
            subprocess.run(["ip", "netns", "exec", server, *argv], check=True)
        subprocess.run(["ip", "netns", "exec", namespace, "ip", "link", "set", "data0p",
                        "netns", server], check=True)
        on_server("ip", "-6", "address", "add", "2001:db8:9::1/64", "dev", "data0p", "nodad")
        on_server("ip", "link", "set", "data0p", "up")
        dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", server, "dnsmasq", "--keep-in-foreground", "--port=0",
             "--bind-interfaces", "--interface=data0p",
             "--dhcp-range=2001:db8:9::50,2001:db8:9::60,64",
             f"--dhcp-leasefile={tmp_path}/leases", f"--pid-file={tmp_path}/dnsmasq.pid",
             "--conf-file=/dev/null"], stderr=subprocess.DEVNULL)
        done = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c",
                               DHCP6_SCENARIO], capture_output=True, text=True, timeout=90,
                              check=False)
        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        [addresses] = seen["reported"]
        leased = [a for a in addresses if ":" in a]
        assert len(leased) == 1, addresses
        address, prefix = leased[0].split("/")
        assert prefix == "64"
        assert 0x50 <= int(address.rsplit(":", 1)[1], 16) <= 0x60, address
        assert seen["client"] is True
        assert (seen["after"], seen["client_after"]) == ([], False)  # released
    finally:
        if dnsmasq is not None:
            dnsmasq.terminate()
            dnsmasq.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", server], check=False)
