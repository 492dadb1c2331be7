"""Throughput and latency between two endpoints on different lab nodes, through the same
switch ports VM NICs use: a VLAN-tagged OVS network (the trunk between the nodes' Open
vSwitches, userspace datapath), the same OVS bridges untagged, and a VXLAN overlay (a
Linux bridge with a VXLAN port over the management network), against a plain veth pair
between two namespaces (the baseline: no switch at all).

    .venv/bin/python -m bench.network_throughput [--seconds 5] [--prefix nbnch]
        [--address-block 10.236.0.0/16]

Needs root, iperf3 and ethtool (scripts/setup installs them). It builds its own lab (two
nodes) and removes it afterwards. The endpoints are network namespaces with a veth into the
node, plugged as Overt plugs a VM NIC: the test guest under TCG would measure QEMU's
emulation, not the network. On the OVS ports the endpoints checksum their own frames (as
Overt asks of guests there: the userspace datapath cannot finish offloaded checksums).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from overt.lab.lab import Lab
from overt.lab.topology import LabSpec, Net, Topology
from overt.protocol.networks import NetworkWiring, VxlanWiring

APPLY = """
import asyncio, json, sys
from pathlib import Path
from overt.node.networks import HostNetworks
from overt.protocol.networks import NetworkWiring
wanted = [NetworkWiring.model_validate(w) for w in json.loads(sys.argv[2])]
asyncio.run(HostNetworks(Path(sys.argv[1])).setup(wanted, None))
"""


@dataclass(frozen=True)
class Case:
    name: str
    plug: str  # "vlan", "untagged", "vxlan", "veth" or "veth-nocsum"
    mtu: int


CASES = (
    Case("veth pair (baseline, offloads on)", "veth", 1500),
    Case("veth pair, checksum offload off", "veth-nocsum", 1500),
    Case("OVS, VLAN 100 across the trunk", "vlan", 1500),
    Case("OVS, untagged across the trunk", "untagged", 1500),
    Case("VXLAN overlay (VNI 5001)", "vxlan", 1450),
)


def _run(argv: list[str], timeout: float = 120) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout


def _apply(lab: Lab, node: str, state: Path, wanted: list[NetworkWiring]) -> None:
    _run(lab.exec_argv(node, [sys.executable, "-c", APPLY, str(state / f"{node}.json"),
                              json.dumps([w.model_dump(mode="json") for w in wanted])]))


@contextlib.contextmanager
def _endpoints(lab: Lab, case: Case, subnet: ipaddress.IPv4Network) -> Iterator[
        tuple[str, str, str]]:
    """Two namespaces with an address each, joined as `case` says; (ns1, ns2, address2)."""
    prefix = lab.topology.spec.prefix
    names = (f"{prefix}-ep1", f"{prefix}-ep2")
    for ns in names:
        _run(["ip", "netns", "add", ns])
    try:
        if case.plug.startswith("veth"):
            _run(["ip", "link", "add", "nbep1", "netns", names[0], "type", "veth", "peer",
                  "name", "nbep2", "netns", names[1]])
            if case.plug == "veth-nocsum":
                for index, ns in enumerate(names, start=1):
                    _run(["ip", "netns", "exec", ns, "ethtool", "-K", f"nbep{index}", "tx",
                          "off", "sg", "off", "tso", "off"])
        else:
            for index, node in ((1, "node1"), (2, "node2")):
                inner, outer = f"nbep{index}", f"nbsw{index}"
                _run(["ip", "link", "add", inner, "netns", names[index - 1], "type", "veth",
                      "peer", "name", outer, "netns", lab.topology.host(node).namespace])
                _plug(lab, node, outer, case.plug)
                _run(["ip", "netns", "exec", names[index - 1], "ethtool", "-K", inner, "tx",
                      "off", "sg", "off", "tso", "off"])
        for index, ns in enumerate(names, start=1):
            dev = f"nbep{index}"
            _run(["ip", "-n", ns, "link", "set", dev, "mtu", str(case.mtu), "up"])
            _run(["ip", "-n", ns, "address", "add", f"{subnet.network_address + index}/24",
                  "dev", dev])
        yield names[0], names[1], str(subnet.network_address + 2)
    finally:
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], check=False)


def _plug(lab: Lab, node: str, port: str, plug: str) -> None:
    """Plug the node's end as libvirt plugs a VM NIC of that kind of network."""
    if plug == "vlan":
        argv = ["ovs-vsctl", "add-port", "ob-guest0", port, "tag=100"]
    elif plug == "untagged":
        argv = ["ovs-vsctl", "add-port", "ob-guest0", port]
    else:
        argv = ["ip", "link", "set", port, "master", "overlay1"]
    _run(lab.exec_argv(node, argv))
    _run(lab.exec_argv(node, ["ip", "link", "set", port, "up"]))


def _measure(ns1: str, ns2: str, address: str, seconds: int) -> tuple[float, float]:
    """(Gbit/s received by the server, median ping RTT in ms)."""
    server = subprocess.Popen(["ip", "netns", "exec", ns2, "iperf3", "-s", "-1", "-B", address],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pings = _run(["ip", "netns", "exec", ns1, "ping", "-c", "20", "-i", "0.05", "-q",
                      address])
        rtt = float(pings.rsplit("=", 1)[1].split("/")[1])
        report = None
        for _attempt in range(20):  # the server may not listen yet
            done = subprocess.run(["ip", "netns", "exec", ns1, "iperf3", "-c", address, "-t",
                                   str(seconds), "-J"], capture_output=True, text=True,
                                  timeout=seconds + 60, check=False)
            if done.returncode == 0:
                report = json.loads(done.stdout)
                break
        if report is None:
            raise SystemExit(f"iperf3 never ran: {done.stdout[-500:]} {done.stderr}")
        gbits = report["end"]["sum_received"]["bits_per_second"] / 1e9
    finally:
        server.kill()
        server.wait()
    return gbits, rtt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prefix", default="nbnch")
    parser.add_argument("--address-block", default="10.236.0.0/16")
    args = parser.parse_args()
    lab = Lab(Topology(LabSpec(nodes=2, prefix=args.prefix,
                               address_block=args.address_block)))
    lab.up()
    try:
        state = lab.topology.state_dir / "bench"
        state.mkdir(exist_ok=True)
        mgmt = {n: str(lab.topology.host(n).address(Net.MANAGEMENT)) for n in ("node1", "node2")}
        for node, other in (("node1", "node2"), ("node2", "node1")):
            _apply(lab, node, state, [
                NetworkWiring(name="vlan100", bridge="vlan100", nic="guest0", vlan=100),
                NetworkWiring(name="overlay1", bridge="overlay1", nic="ovirtmgmt",
                              vxlan=VxlanWiring(vni=5001, local=mgmt[node],
                                                remotes=(mgmt[other],)))])
        subnet = ipaddress.IPv4Network(lab.topology.block.network_address + 200 * 256) \
            .supernet(new_prefix=24)
        load = Path("/proc/loadavg").read_text().split()[0]
        print(f"load average {load} on {os.cpu_count()} CPUs; {args.runs} runs of "
              f"{args.seconds} s each")
        print(f"{'path':<38} {'Gbit/s (median of runs)':>24} {'RTT ms':>8}")
        for case in CASES:
            gbits, rtts = [], []
            with _endpoints(lab, case, subnet) as (ns1, ns2, address):
                for _ in range(args.runs):
                    rate, rtt = _measure(ns1, ns2, address, args.seconds)
                    gbits.append(rate)
                    rtts.append(rtt)
            if not case.plug.startswith("veth"):
                for node in ("node1", "node2"):  # the node's end went with the namespace
                    subprocess.run(lab.exec_argv(node, ["ovs-vsctl", "--if-exists", "del-port",
                                                        f"nbsw{node[-1]}"]), check=False)
            print(f"{case.name:<38} {statistics.median(gbits):>24.2f} "
                  f"{statistics.median(rtts):>8.3f}", flush=True)
    finally:
        lab.down()


if __name__ == "__main__":
    main()
