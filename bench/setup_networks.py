"""`setupnetworks` through the oVirt SDK to the network applied, against the raw tool.

The lab of `tests/e2e/lab/test_host_networks_in_lab.py` (two nodes running `overt node`,
the engine fully managed over RabbitMQ): a VLAN network (tag 100, a static address) is
attached to node1's trunk NIC `guest0` with `setupnetworks`, timed, and detached again;
without and with `check_connectivity=True` (the node keeps the change only once the engine
confirms it can still reach it), and by hand (below), the three in turn, `--runs` times.
Times are from the request: "call" until the SDK call returns (the engine has queued the
job), "node" until node1's switch has the fake bridge on the tag with the address
(`ovs-vsctl br-to-vlan` and `ip address` polled in node1's namespace), "job" until the
engine's job ended, "sync" until the engine lists the attachment in sync (the node's report
read back by the monitor, one every 2 s in the lab). One warm-up attach and detach first,
so the NIC's OVS bridge (`ob-guest0`) exists for every counted run, as for the raw tool.
The raw tool: the same bridge made by hand on the same switch, `ovs-vsctl add-br NAME
ob-guest0 100` + `ip address add` + `ip link set up` in node1's namespace; "wall" counts
entering the namespace (nsenter) too, "tool" only the three commands.
Needs root and the lab (`OVERT_TEST_LAB_PREFIX`, `OVERT_TEST_LAB_BLOCK` as for the tests).
Usage: .venv/bin/python -m bench.setup_networks [--runs 5]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
from tests.e2e.lab.test_host_networks_in_lab import SPEC, EngineLab, _on, engine_lab
from tests.support.demo import wait_until

from overt.lab.lab import Lab
from overt.lab.topology import Net

__all__ = ["engine_lab"]  # the lab test's fixture, for the scenario
RUNS_ENV = "OVERT_BENCH_SETUPNET_RUNS"
FIGURES_ENV = "OVERT_BENCH_SETUPNET_FIGURES"
NODE, NIC, VLAN, NAME, RAW = "node1", "guest0", 100, "snb100", "snraw100"
PARENT = f"ob-{NIC}"
POLL_S = 0.02


def _node_has(lab: Lab, bridge: str, address: str) -> bool:
    """node1's switch carries `bridge` on the tag with `address` on it."""
    shown = _on(lab, NODE, "sh", "-c", f"ovs-vsctl br-to-vlan {bridge} && "
                f"ip -4 -o address show dev {bridge}").stdout.split("\n", 1)
    return shown[0].strip() == str(VLAN) and f" {address}/24 " in "".join(shown[1:])


def _watch_node(lab: Lab, address: str, seen: dict[str, float]) -> threading.Thread:
    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if _node_has(lab, NAME, address):
                seen["node"] = time.monotonic()
                return
            time.sleep(POLL_S)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _jobs_settled(jobs: sdk.services.JobsService) -> bool:
    return all(j.status != types.JobStatus.STARTED for j in jobs.list())


def _attach(conn: sdk.Connection, lab: Lab, host_id: str, network_id: str, address: str,
            check: bool) -> dict[str, float]:
    """One attach through the SDK, timed; returns the times in seconds from the request."""
    system = conn.system_service()
    host = system.hosts_service().host_service(host_id)
    jobs = system.jobs_service()
    before = {j.id for j in jobs.list()}
    seen: dict[str, float] = {}
    start = time.monotonic()
    watcher = _watch_node(lab, address, seen)
    host.setup_networks(
        modified_network_attachments=[types.NetworkAttachment(
            network=types.Network(id=network_id), host_nic=types.HostNic(name=NIC),
            ip_address_assignments=[types.IpAddressAssignment(
                assignment_method=types.BootProtocol.STATIC,
                ip=types.Ip(address=address, netmask="255.255.255.0"))])],
        check_connectivity=check, connectivity_timeout=30 if check else None)
    seen["call"] = time.monotonic()
    [job] = [j for j in jobs.list() if j.id not in before
             and j.description.startswith("Setting up the networks")]
    job_service = jobs.job_service(job.id)
    deadline = time.monotonic() + 120
    while "job" not in seen or "sync" not in seen:
        assert time.monotonic() < deadline, f"attach did not settle: {seen}"
        if "job" not in seen and (got := job_service.get()).status != types.JobStatus.STARTED:
            assert got.status == types.JobStatus.FINISHED, got.status
            seen["job"] = time.monotonic()
        if "sync" not in seen and any(
                a.network.id == network_id and a.in_sync
                for a in host.network_attachments_service().list()):
            seen["sync"] = time.monotonic()
        time.sleep(POLL_S)
    watcher.join(timeout=120)
    assert "node" in seen, "node1's switch never carried the network"
    return {key: seen[key] - start for key in ("call", "node", "job", "sync")}


def _detach(conn: sdk.Connection, lab: Lab, host_id: str, network_id: str) -> None:
    system = conn.system_service()
    host = system.hosts_service().host_service(host_id)
    attachment = next(a for a in host.network_attachments_service().list()
                      if a.network.id == network_id)
    host.setup_networks(removed_network_attachments=[types.NetworkAttachment(
        id=attachment.id)])
    wait_until(lambda: _on(lab, NODE, "ovs-vsctl", "br-exists", NAME).returncode == 2, 60,
               "the network to leave node1's switch")
    wait_until(lambda: _jobs_settled(system.jobs_service()), 60, "the engine's jobs to end")
    assert all(a.network.id != network_id for a in host.network_attachments_service().list())


def _raw(lab: Lab, address: str) -> tuple[float, float]:
    """The same bridge by hand: (wall with nsenter, the commands alone) in seconds."""
    script = (f"a=$(date +%s%N); ovs-vsctl add-br {RAW} {PARENT} {VLAN} && "
              f"ip address add {address}/24 dev {RAW} && ip link set {RAW} up && "
              "echo $(( $(date +%s%N) - a ))")
    start = time.monotonic()
    done = _on(lab, NODE, "sh", "-c", script)
    wall = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    assert _on(lab, NODE, "ovs-vsctl", "br-to-vlan", RAW).stdout.strip() == str(VLAN)
    removed = _on(lab, NODE, "ovs-vsctl", "del-br", RAW)
    assert removed.returncode == 0, removed.stderr
    return wall, int(done.stdout.strip()) / 1e9


def test_setup_networks_figures(engine_lab: EngineLab) -> None:
    """The scenario, run by pytest for the lab's fixture (see `main`)."""
    runs = int(os.environ.get(RUNS_ENV, "5"))
    lab, site = engine_lab.lab, engine_lab.site
    address = str(ipaddress.IPv4Network(SPEC.address_block).network_address + VLAN * 256 + 1)
    conn = site.connect()
    results: dict[str, dict[str, list[float]]] = {}
    try:
        site.approve_all(conn, 2)
        system = conn.system_service()
        mgmt = str(lab.topology.host(NODE).address(Net.MANAGEMENT))
        host_id = next(h.id for h in system.hosts_service().list() if h.address == mgmt)
        network = system.networks_service().add(types.Network(
            name=NAME, data_center=types.DataCenter(name="Default"), vlan=types.Vlan(id=VLAN)))
        cluster = system.clusters_service().list(search="name=Default")[0]
        system.clusters_service().cluster_service(cluster.id).networks_service().add(
            types.Network(id=network.id, required=False))
        wait_until(lambda: NIC in [n.name for n in system.hosts_service().host_service(
            host_id).nics_service().list()], 60, f"node1 to report {NIC}")
        _attach(conn, lab, host_id, network.id, address, False)  # warm-up: makes ob-guest0
        _detach(conn, lab, host_id, network.id)
        for _ in range(runs):  # the three alternate, so a changing load hits them alike
            for label, check in (("sdk plain", False), ("sdk check_connectivity", True)):
                rows = results.setdefault(label, {})
                for key, value in _attach(conn, lab, host_id, network.id, address,
                                          check).items():
                    rows.setdefault(key, []).append(value)
                _detach(conn, lab, host_id, network.id)
            wall, tool = _raw(lab, address)
            rows = results.setdefault("raw ovs-vsctl + ip", {})
            rows.setdefault("wall", []).append(wall)
            rows.setdefault("tool", []).append(tool)
    finally:
        conn.close()
    Path(os.environ[FIGURES_ENV]).write_text(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="overt-bench-setupnet-") as scratch:
        figures = Path(scratch) / "figures.json"
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "tests.conftest",
             "-p", "no:cacheprovider", "-o", "timeout=3000", "-s", __file__],
            env={**os.environ, FIGURES_ENV: str(figures), RUNS_ENV: str(args.runs)},
            check=False, capture_output=True, text=True)
        if done.returncode != 0 or not figures.exists():
            sys.exit(f"the lab scenario failed:\n{done.stdout[-5000:]}\n{done.stderr[-2000:]}")
        results = json.loads(figures.read_text())
    print(f"VLAN {VLAN} network with a static address on node1's {NIC}, {args.runs} runs each "
          f"(load average {load[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end), "
          "seconds from the request, median (min-max):")
    for label, rows in results.items():
        shown = ", ".join(f"{key} {statistics.median(values):.3f} "
                          f"({min(values):.3f}-{max(values):.3f})"
                          for key, values in rows.items())
        print(f"  {label:24} {shown}")


if __name__ == "__main__":
    main()
