"""Fully managed mode in the lab: two lab nodes run `overt node --bus amqp`, enroll over
HTTPS, and from then on take commands and report events through the broker."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import ovirtsdk4.types as types
import pytest

from overt.lab.lab import Lab
from overt.lab.topology import LabSpec, Net, Topology
from overt.system.daemons import ensure_libvirtd
from tests.conftest import require_root
from tests.support.broker import Broker
from tests.support.cli import overt
from tests.support.demo import wait_until
from tests.support.managed import ManagedSite, resync_pending

pytestmark = [pytest.mark.lab, pytest.mark.amqp, pytest.mark.slow]

# A lab of this module's own, so that it never meets another suite's lab.
SPEC = LabSpec(nodes=2, prefix=os.environ.get("OVERT_TEST_MANAGED_LAB_PREFIX", "ovmg"),
               address_block=os.environ.get("OVERT_TEST_MANAGED_LAB_BLOCK", "10.214.0.0/16"))
ARGS = ["--prefix", SPEC.prefix]
MIB = 2**20


@dataclass
class ManagedLab:
    lab: Lab
    site: ManagedSite
    nodes: dict[str, subprocess.Popen[bytes]]


@pytest.fixture(scope="module")
def managed_lab(rabbitmq: Broker) -> Iterator[ManagedLab]:
    require_root()
    ensure_libvirtd()  # its QEMU capability cache seeds the nodes'
    built = overt("lab", "up", "--nodes", str(SPEC.nodes), *ARGS,
                  "--address-block", SPEC.address_block)
    assert built.returncode == 0, built.stdout + built.stderr
    lab = Lab(Topology(SPEC))
    engine_address = lab.topology.engine_address()
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-managed-lab-"))
    base.chmod(0o755)
    site = ManagedSite(base, f"sqlite:///{base}/engine.db", rabbitmq.engine_url_now(),
                       rabbitmq.admin_url)
    site.engine("engine", OVERT_PUBLIC_ADDRESS=str(engine_address),
                OVERT_BROKER_NODE_URL=f"amqp://{engine_address}:5672",
                OVERT_BROKER_ALLOW_PLAIN="1")  # the lab is a network of this machine
    nodes: dict[str, subprocess.Popen[bytes]] = {}
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
                nodes[node] = subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env={**os.environ, "OVERT_NODE_ANNOUNCE_INTERVAL_S": "0.5"})
        yield ManagedLab(lab, site, nodes)
    finally:
        for process in nodes.values():
            process.send_signal(signal.SIGTERM)
        for process in nodes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        site.stop_all()
        site.print_logs()
        overt("lab", "down", *ARGS)
        shutil.rmtree(base, ignore_errors=True)


def _domain_state(lab: Lab, node: str, vm_id: str) -> int | None:
    conn = libvirt.open(lab.hypervisor(node).uri)
    try:
        return int(conn.lookupByUUIDString(vm_id).state()[0])
    except libvirt.libvirtError:
        return None
    finally:
        conn.close()


def test_a_vm_placed_on_a_lab_node_runs_and_its_events_come_through_the_broker(
        managed_lab: ManagedLab) -> None:
    lab, site = managed_lab.lab, managed_lab.site
    conn = site.connect()
    try:
        site.approve_all(conn, 2)
        hosts = {h.address: h for h in conn.system_service().hosts_service().list()}
        by_address = {str(lab.topology.host(n).address(Net.MANAGEMENT)): n
                      for n in ("node1", "node2")}
        assert set(hosts) == set(by_address)
        vms = conn.system_service().vms_service()
        vm = vms.add(types.Vm(name="lab-managed", cluster=types.Cluster(name="Default"),
                              template=types.Template(name="Blank"), memory=128 * MIB))
        service = vms.vm_service(vm.id)
        service.start()
        running = wait_until(lambda: (v := service.get()).status == types.VmStatus.UP and v,
                             120, "the VM to be up")
        node = next(by_address[a] for a, h in hosts.items() if h.id == running.host.id)
        assert _domain_state(lab, node, vm.id) == libvirt.VIR_DOMAIN_RUNNING

        # Stopped behind the engine's back, once the monitor has nothing left to resync:
        # only the node's lifecycle event, through the broker, can tell the engine.
        wait_until(lambda: not resync_pending(site.db), 30, "the monitor to settle")
        stopped = subprocess.run(lab.exec_argv(node, ["virsh", "destroy", vm.id]),
                                 capture_output=True, text=True, check=False, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        wait_until(lambda: service.get().status == types.VmStatus.DOWN, 60,
                   "the engine to learn that the VM stopped")
        host_name = hosts[next(a for a, n in by_address.items() if n == node)].name
        events = [e.description for e in conn.system_service().events_service().list()]
        assert f"VM lab-managed is down on host {host_name}" in events
    finally:
        conn.close()
    node_log = site.text(node)
    assert "commands and events through the broker" in node_log
    assert "connected to the broker at amqp://overt-node-" in node_log
    assert f"@{lab.topology.engine_address()}:5672/" in node_log
