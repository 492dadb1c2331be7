"""A lab node loses its power (through its virtual BMC, outside Overt): the engine judges it
non responsive after its grace, fences it with the real `fence_ipmilan`, and restarts its
highly available VM on the other node; its other VM is down with an event saying why. Both
nodes' libvirtd are polled every 200 ms throughout: the HA VM never runs on two at once.

A node whose fence agent fails (a wrong BMC password) and whose storage and management are
cut: its leased HA VM is restarted elsewhere only after its lease expired, never before.

Set `OVERT_HA_TIMINGS_FILE` to have the test write its figures there (`bench/ha_restart.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import libvirt
import ovirtsdk4.types as types
import pytest

from overt.lab.lab import Lab
from tests.conftest import TEST_LAB
from tests.e2e.lab.test_shared_storage import (
    LEASE_IO_TIMEOUT_S,
    StorageLab,
    _lease_facts,
    add_nfs_domain,
    open_storage_lab,
    storage_daemon_of,
)
from tests.support.broker import Broker
from tests.support.demo import wait_until
from tests.support.managed import PASSWORD

pytestmark = [pytest.mark.lab, pytest.mark.amqp, pytest.mark.vm, pytest.mark.slow]

NODES = ("node1", "node2")
BMC_PASSWORD = "Lab-Ha-Bmc-Pw-3"
MIB = 1 << 20
GRACE_S = 2  # the cluster's grace: the lab's nodes send a heartbeat every second


@pytest.fixture(scope="module")
def ha_lab(rabbitmq: Broker) -> Iterator[StorageLab]:
    """The shared lab and an engine that misses a node after 5 s without heartbeats (VM
    leases with a 1 s I/O timeout: a lease expires 8 s after its last renewal)."""
    with open_storage_lab(rabbitmq, OVERT_HEARTBEAT_TIMEOUT_S="5",
                          OVERT_LEASE_IO_TIMEOUT_S=str(LEASE_IO_TIMEOUT_S)) as opened:
        yield opened


@dataclass
class NodeBmc:
    port: int
    proc: subprocess.Popen[bytes]


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def node1_bmc(ha_lab: StorageLab, tmp_path: Path) -> Iterator[NodeBmc]:
    """node1's virtual BMC on loopback; afterwards node1's hypervisor and agent run again."""
    (tmp_path / "pw").write_text(BMC_PASSWORD)
    port = _udp_port()
    with (tmp_path / "bmc.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "overt.lab.bmc", "--lab-node", "node1", "--lab-prefix",
             TEST_LAB.prefix, "--port", str(port), "--password-file", str(tmp_path / "pw")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_until(lambda: proc.poll() is not None
               or "listening" in (tmp_path / "bmc.log").read_text(), 60, "the BMC to listen")
    assert proc.poll() is None, (tmp_path / "bmc.log").read_text()
    yield NodeBmc(port, proc)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    ha_lab.lab.hypervisor("node1").ensure_running()
    agent = ha_lab.first.nodes.get("node1")
    if agent is None or agent.poll() is not None:
        ha_lab.first.start_node("node1")


def _power_off(bmc: NodeBmc) -> None:
    done = subprocess.run(["fence_ipmilan"], input=(
        f"action=off\nip=127.0.0.1\nipport={bmc.port}\nusername=admin\n"
        f"password={BMC_PASSWORD}\nlanplus=1\n"), capture_output=True, text=True, check=False,
        timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _copies(lab: Lab, vm_id: str) -> list[str]:
    """The nodes whose libvirtd runs the VM; a node whose libvirtd is down runs nothing
    (its power is off: the BMC killed every QEMU)."""
    found = []
    for node in NODES:
        try:
            conn = libvirt.open(lab.hypervisor(node).uri)
        except libvirt.libvirtError:
            continue
        try:
            try:
                if conn.lookupByUUIDString(vm_id).isActive():
                    found.append(node)
            except libvirt.libvirtError:
                pass
        finally:
            conn.close()
    return found


def _set_grace(ha_lab: StorageLab, cluster_id: str) -> None:
    """Overt's `host_grace_period` (the SDK does not know it): a plain XML update."""
    managed = ha_lab.first.managed
    body = ("<cluster><fencing_policy><enabled>true</enabled><host_grace_period>"
            f"<seconds>{GRACE_S}</seconds><per_vm_seconds>0</per_vm_seconds>"
            "</host_grace_period></fencing_policy></cluster>")
    answer = httpx.put(
        f"https://127.0.0.1:{managed.api_port}/ovirt-engine/api/clusters/{cluster_id}",
        content=body, headers={"Content-Type": "application/xml"},
        auth=("admin@internal", PASSWORD),
        verify=ssl.create_default_context(cafile=str(managed.ca_file)), timeout=60)
    assert answer.status_code == 200, answer.text


def test_a_powered_off_nodes_ha_vm_runs_on_the_other_node_and_never_twice(
        ha_lab: StorageLab, node1_bmc: NodeBmc) -> None:
    site = ha_lab.first
    conn = site.connect()
    try:
        system = conn.system_service()
        node1, node2 = site.host_of(conn, "node1"), site.host_of(conn, "node2")
        host1 = system.hosts_service().host_service(node1.id)
        host1.fence_agents_service().add(types.Agent(
            type="ipmilan", address="127.0.0.1", port=node1_bmc.port, username="admin",
            password=BMC_PASSWORD, order=1))
        host1.update(types.Host(power_management=types.PowerManagement(enabled=True)))
        cluster = system.clusters_service().list(search="name=Default")[0]
        _set_grace(ha_lab, cluster.id)
        policy = system.clusters_service().cluster_service(cluster.id).get().fencing_policy
        assert policy.enabled is True and policy.skip_if_connectivity_broken.enabled is False

        vms = system.vms_service()
        services = {}
        for name, ha in (("lab-ha-vm", True), ("lab-plain-vm", False)):
            vm = vms.add(types.Vm(
                name=name, cluster=types.Cluster(name="Default"),
                template=types.Template(name="Blank"), memory=128 * MIB,
                high_availability=types.HighAvailability(enabled=ha, priority=50),
                placement_policy=types.VmPlacementPolicy(hosts=[types.Host(id=node1.id)])))
            services[name] = vms.vm_service(vm.id)
            services[name].start()
        ha_vm = services["lab-ha-vm"].get()
        assert ha_vm.high_availability.enabled and ha_vm.high_availability.priority == 50
        for service in services.values():
            wait_until(lambda s=service: s.get().status == types.VmStatus.UP, 180,
                       "the VM to be up")
            # Started on node1; free to run anywhere from now on.
            service.update(types.Vm(placement_policy=types.VmPlacementPolicy(
                affinity=types.VmAffinity.MIGRATABLE, hosts=[])))
        assert _copies(ha_lab.lab, ha_vm.id) == ["node1"]

        lost_at = time.monotonic()
        _power_off(node1_bmc)
        seen: list[list[str]] = []

        def restarted() -> bool:
            seen.append(_copies(ha_lab.lab, ha_vm.id))
            vm = services["lab-ha-vm"].get()
            return vm.status == types.VmStatus.UP and vm.host is not None \
                and vm.host.id == node2.id and seen[-1] == ["node2"]
        try:
            wait_until(restarted, 240, "the HA VM to run on node2", every=0.2)
        except AssertionError:
            site.managed.print_logs()
            print("\n".join(e.description for e in system.events_service().list()))
            vm = services["lab-ha-vm"].get()
            print("last copies seen:", seen[-3:], "distinct:", {tuple(c) for c in seen},
                  "engine:", vm.status, vm.host.id if vm.host else None, "node2:", node2.id)
            raise
        took_s = time.monotonic() - lost_at
        assert all(len(copies) <= 1 for copies in seen), seen  # never two copies
        assert [] in seen  # it was down somewhere between: the old copy went first

        plain = services["lab-plain-vm"].get()
        assert plain.status == types.VmStatus.DOWN
        events = [e.description for e in system.events_service().list()]
        assert any(d.startswith(f"VM lab-plain-vm is down: host {node1.name} was fenced")
                   and d.endswith("it was not shut down gracefully") for d in events), events
        assert (f"Highly available VM lab-ha-vm is restarted on host {node2.name}: its host "
                f"{node1.name} failed and its copy there is gone") in events
        assert any(d.startswith(f"Host {node1.name} is not responding after its grace")
                   for d in events), events
        if os.environ.get("OVERT_HA_TIMINGS_FILE"):
            Path(os.environ["OVERT_HA_TIMINGS_FILE"]).write_text(json.dumps(
                {"power_loss_to_ha_vm_up_s": round(took_s, 1), "polls": len(seen)}))

        for service in services.values():
            if service.get().status != types.VmStatus.DOWN:
                service.stop()
        wait_until(lambda: all(s.get().status == types.VmStatus.DOWN
                               for s in services.values()), 120, "the VMs to stop")
        for service in services.values():
            service.remove()
    finally:
        conn.close()


def _agent_pid(ha_lab: StorageLab, node: str) -> int:
    """The `overt node` process of a lab node (inside its namespaces), by its data dir."""
    data_dir = str(ha_lab.first.base / node / "data").encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[1:4] == [b"-m", b"overt", b"node"] and data_dir in argv:
                return int(proc.name)
    raise AssertionError(f"no agent of {node} runs")


def test_with_its_fence_agent_failing_a_cut_nodes_leased_vm_restarts_only_after_expiry(
        ha_lab: StorageLab, node1_bmc: NodeBmc) -> None:
    site = ha_lab.first
    domain = add_nfs_domain(ha_lab)
    conn = site.connect()
    frozen: list[int] = []
    vm_id = ""
    try:
        system = conn.system_service()
        node1, node2 = site.host_of(conn, "node1"), site.host_of(conn, "node2")
        host1 = system.hosts_service().host_service(node1.id)
        for agent in host1.fence_agents_service().list():
            host1.fence_agents_service().agent_service(agent.id).remove()
        host1.fence_agents_service().add(types.Agent(
            type="ipmilan", address="127.0.0.1", port=node1_bmc.port, username="admin",
            password="Not-The-Bmc-Password-1", order=1))  # every fence of node1 fails
        host1.update(types.Host(power_management=types.PowerManagement(enabled=True)))
        cluster = system.clusters_service().list(search="name=Default")[0]
        _set_grace(ha_lab, cluster.id)

        vms = system.vms_service()
        vm = vms.add(types.Vm(
            name="lab-leased-ha", cluster=types.Cluster(name="Default"),
            template=types.Template(name="Blank"), memory=128 * MIB,
            high_availability=types.HighAvailability(enabled=True, priority=50),
            lease=types.StorageDomainLease(storage_domain=types.StorageDomain(id=domain.id)),
            placement_policy=types.VmPlacementPolicy(hosts=[types.Host(id=node1.id)])))
        vm_id = vm.id
        service = vms.vm_service(vm.id)
        service.start()
        wait_until(lambda: service.get().status == types.VmStatus.UP, 180, "the VM to be up")
        service.update(types.Vm(placement_policy=types.VmPlacementPolicy(
            affinity=types.VmAffinity.MIGRATABLE, hosts=[])))
        assert _copies(ha_lab.lab, vm.id) == ["node1"]
        kills_file = site.keeper_dir("node1") / "kills.jsonl"
        # The engine knows node1 holds the lease (its keeper's renewals came in the stats):
        # the proof it will wait for.
        wait_until(lambda: asyncio.run(_lease_facts(site, node1.id, vm.id)) == (True, False),
                   30, "the engine to record node1's renewals")

        # node1 loses its storage (its lease daemon frozen) and its management (its agent
        # frozen); its BMC refuses the engine's password.
        frozen.append(storage_daemon_of(site.keeper_dir("node1")))
        frozen.append(_agent_pid(ha_lab, "node1"))
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        seen: list[tuple[float, list[str]]] = []

        def restarted() -> bool:
            seen.append((time.time(), _copies(ha_lab.lab, vm.id)))
            now = service.get()
            return now.status == types.VmStatus.UP and now.host is not None \
                and now.host.id == node2.id and seen[-1][1] == ["node2"]
        try:
            wait_until(restarted, 180, "the leased HA VM to run on node2", every=0.2)
        except AssertionError:
            site.managed.print_logs()
            print("\n".join(e.description for e in system.events_service().list()))
            raise
        assert all(len(copies) <= 1 for _, copies in seen), seen  # never two copies
        kills = [json.loads(line) for line in kills_file.read_text().splitlines()
                 if json.loads(line)["vm_id"] == vm.id]
        assert kills and kills[0]["stopped"], kills  # node1's keeper stopped its copy
        on_node2 = min(at for at, copies in seen if copies == ["node2"])
        # not before node1's copy was gone, and not before its lease expired (2T after
        # its keeper stopped it; node2's keeper watched it stand still for 8T)
        assert on_node2 >= kills[0]["at"] + 2 * LEASE_IO_TIMEOUT_S, (on_node2, kills)
        events = [e.description for e in system.events_service().list()]
        assert (f"VM lab-leased-ha is down: its lease on shared storage expired (host "
                f"{node1.name} stopped renewing it); it was not shut down gracefully") \
            in events, events
        assert (f"Highly available VM lab-leased-ha is restarted on host {node2.name}: its "
                f"host {node1.name} failed and its copy there is gone") in events
        assert not any(d.startswith(f"Host {node1.name} was fenced") for d in events)
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if vm_id:
            with contextlib.suppress(Exception):
                conn.system_service().vms_service().vm_service(vm_id).stop()
        conn.close()
