"""The agent's VXLAN overlay networks on the real kernel, in a throwaway network namespace:
the network's bridge gets a VXLAN device as its port, flooding to exactly the remotes it
was given (changed in place), made again when its VNI changes, and gone with the network."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from overt.lab import netns
from tests.conftest import require_root

pytestmark = [pytest.mark.slow]

SCENARIO = r'''
import asyncio, json, subprocess, tempfile
from pathlib import Path
from overt.node.networks import HostNetworks
from overt.protocol.networks import NetworkWiring, VxlanWiring

def link(name):
    out = subprocess.run(["ip", "-d", "-j", "link", "show", name], capture_output=True,
                         text=True).stdout
    if not out.strip():
        return None
    info = json.loads(out)[0]
    data = info.get("linkinfo", {}).get("info_data", {})
    return {"ifindex": info["ifindex"], "master": info.get("master"), "mtu": info["mtu"],
            "vni": data.get("id"), "local": data.get("local"), "up": "UP" in info["flags"]}

def flood(name):
    out = subprocess.run(["bridge", "fdb", "show", "dev", name], capture_output=True,
                         text=True).stdout
    return sorted(l.split()[l.split().index("dst") + 1] for l in out.splitlines()
                  if l.startswith("00:00:00:00:00:00") and " dst " in l)

def overlay(vni, remotes):
    return NetworkWiring(name="overlay1", bridge="ovl1", nic="data0", boot_protocol="static",
                         address="10.99.0.1/24",
                         vxlan=VxlanWiring(vni=vni, local="192.0.2.10", remotes=remotes))

async def main() -> None:
    nets = HostNetworks(Path(tempfile.mkdtemp()) / "networks.json")
    seen = {}
    await nets.setup([overlay(5001, ("192.0.2.11", "192.0.2.12"))], None)
    seen["first"] = {"port": link("vx-ovl1"), "bridge": link("ovl1"), "flood": flood("vx-ovl1")}
    await nets.setup([overlay(5001, ("192.0.2.12", "192.0.2.13"))], None)
    seen["moved"] = {"port": link("vx-ovl1"), "flood": flood("vx-ovl1")}
    await nets.setup([overlay(5002, ("192.0.2.12",))], None)
    seen["renumbered"] = {"port": link("vx-ovl1"), "flood": flood("vx-ovl1")}
    seen["report"] = [r.model_dump(mode="json") for r in await nets.report()]
    await nets.setup([], None)
    seen["gone"] = {"port": link("vx-ovl1"), "bridge": link("ovl1")}
    print(json.dumps(seen))

asyncio.run(main())
'''


@pytest.fixture
def namespace() -> Iterator[str]:
    require_root()
    name = f"ovt-vx-{uuid.uuid4().hex[:8]}"
    netns.ensure_namespace(name)
    try:
        for argv in (["ip", "link", "set", "lo", "up"],
                     ["ip", "link", "add", "data0", "type", "veth", "peer", "name", "data0p"],
                     ["ip", "address", "add", "192.0.2.10/24", "dev", "data0"],
                     ["ip", "link", "set", "data0", "up"]):
            subprocess.run(["ip", "netns", "exec", name, *argv], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_an_overlay_network_is_a_bridge_with_a_vxlan_port_to_its_remotes(
        namespace: str) -> None:
    done = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", SCENARIO],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    first = seen["first"]
    assert first["port"]["vni"] == 5001 and first["port"]["local"] == "192.0.2.10"
    assert first["port"]["master"] == "ovl1" and first["port"]["up"]
    assert first["port"]["mtu"] == 1450 and first["bridge"]["mtu"] == 1450  # 1500 - 50
    assert first["flood"] == ["192.0.2.11", "192.0.2.12"]
    # New remotes are set on the same device; a new VNI makes it again.
    assert seen["moved"]["flood"] == ["192.0.2.12", "192.0.2.13"]
    assert seen["moved"]["port"]["ifindex"] == first["port"]["ifindex"]
    assert seen["renumbered"]["port"]["vni"] == 5002
    assert seen["renumbered"]["flood"] == ["192.0.2.12"]
    [reported] = seen["report"]
    assert reported["name"] == "overlay1" and reported["vlan"] is None
    assert "10.99.0.1/24" in reported["addresses"]
    assert seen["gone"] == {"port": None, "bridge": None}
