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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import libvirt
import ovirtsdk4.types as types
import pytest

from overt.lab.lab import Lab
from overt.lab.topology import Net
from tests.conftest import TEST_LAB
from tests.e2e.lab.test_shared_storage import (
    AGENT_ENV,
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
HEARTBEAT_TIMEOUT_S = 5  # the engine's: a node silent this long is `connecting`
BLIP_GRACE_S = 30  # the grace while a node's cable is out for a moment
BLIP_S = 6  # longer than the heartbeat timeout, well within BLIP_GRACE_S


@pytest.fixture(scope="module")
def ha_lab(rabbitmq: Broker) -> Iterator[StorageLab]:
    """The shared lab and an engine that misses a node after 5 s without heartbeats (VM
    leases with a 1 s I/O timeout: a lease expires 8 s after its last renewal)."""
    with open_storage_lab(rabbitmq, OVERT_HEARTBEAT_TIMEOUT_S=str(HEARTBEAT_TIMEOUT_S),
                          OVERT_LEASE_IO_TIMEOUT_S=str(LEASE_IO_TIMEOUT_S),
                          # No lab node runs fence_kdump_send: a short wait before a fence.
                          OVERT_KDUMP_STARTED_TIMEOUT_S="1") as opened:
        yield opened


@dataclass
class NodeBmc:
    port: int
    proc: subprocess.Popen[bytes]


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class _AdoptedAgent:
    """An agent a BMC started on power on, outliving its BMC: the site stops it at the end
    as it stops the agents it started (`send_signal`, `wait`, `kill`, `poll`)."""

    pid: int

    def poll(self) -> int | None:
        """None while it runs; a zombie has ended (its new parent reaps it when it will)."""
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            return 0
        return 0 if state in ("Z", "X") else None

    def send_signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        """As `Popen.wait`: TimeoutExpired past `timeout` (the site then kills it)."""
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"agent {self.pid}", timeout)
            time.sleep(0.1)
        return 0


@contextmanager
def _node_bmc(ha_lab: StorageLab, node: str, work: Path) -> Iterator[NodeBmc]:
    """`node`'s virtual BMC on loopback. Its power on starts the node's libvirtd and agent
    at once (as a real machine boots its services), so the engine sees the node back while
    the test goes on; afterwards the hypervisor and an agent run again."""
    (work / "pw").write_text(BMC_PASSWORD)
    port = _udp_port()
    with (work / "bmc.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "overt.lab.bmc", "--lab-node", node, "--lab-prefix",
             TEST_LAB.prefix, "--port", str(port), "--password-file", str(work / "pw"),
             "--agent-log", str(ha_lab.first.agent_log(node)), "--",
             *ha_lab.first.agent_argv(node)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **AGENT_ENV})
    wait_until(lambda: proc.poll() is not None
               or "listening" in (work / "bmc.log").read_text(), 60, "the BMC to listen")
    assert proc.poll() is None, (work / "bmc.log").read_text()
    yield NodeBmc(port, proc)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    ha_lab.lab.hypervisor(node).ensure_running()
    agent = ha_lab.first.nodes.get(node)
    if agent is None or agent.poll() is not None:
        try:
            ha_lab.first.nodes[node] = _AdoptedAgent(_agent_pid(ha_lab, node))  # type: ignore[assignment]
        except AssertionError:  # none runs (the power stayed off)
            ha_lab.first.start_node(node)


@pytest.fixture
def node1_bmc(ha_lab: StorageLab, tmp_path: Path) -> Iterator[NodeBmc]:
    with _node_bmc(ha_lab, "node1", tmp_path) as bmc:
        yield bmc


@pytest.fixture
def node2_bmc(ha_lab: StorageLab, tmp_path: Path) -> Iterator[NodeBmc]:
    with _node_bmc(ha_lab, "node2", tmp_path) as bmc:
        yield bmc


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


def _fence_through(host: Any, bmc: NodeBmc) -> None:
    """The host's power management: its BMC alone (an agent of an earlier test goes)."""
    agents = host.fence_agents_service()
    for agent in agents.list():
        agents.agent_service(agent.id).remove()
    agents.add(types.Agent(type="ipmilan", address="127.0.0.1", port=bmc.port,
                           username="admin", password=BMC_PASSWORD, order=1))
    host.update(types.Host(power_management=types.PowerManagement(enabled=True)))


def _set_grace(ha_lab: StorageLab, cluster_id: str, seconds: float = GRACE_S) -> None:
    """Overt's `host_grace_period` (the SDK does not know it): a plain XML update."""
    managed = ha_lab.first.managed
    body = ("<cluster><fencing_policy><enabled>true</enabled><host_grace_period>"
            f"<seconds>{seconds}</seconds><per_vm_seconds>0</per_vm_seconds>"
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
        _fence_through(system.hosts_service().host_service(node1.id), node1_bmc)
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
        # The lab's BMC brings the node's agent back at power on, often before
        # `fence_ipmilan` returns: then the node itself reports the VM gone, first.
        assert any((d.startswith(f"VM lab-plain-vm is down: host {node1.name} was fenced")
                   and d.endswith("it was not shut down gracefully"))
                   or d == f"VM lab-plain-vm is down: host {node1.name} does not run it any more"
                   for d in events), events
        assert any(d.startswith(f"Host {node1.name}: power management restart through ipmilan")
                   and "succeeded" in d for d in events), events
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
        frozen.append(storage_daemon_of(site.keeper_dir("node1"), domain.id))
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


@contextmanager
def _management_cut(lab: Lab, node: str) -> Iterator[None]:
    """`node`'s management cable out (its storage cable stays in) until the block ends."""
    lab.set_link(node, Net.MANAGEMENT, up=False)
    try:
        yield
    finally:
        lab.set_link(node, Net.MANAGEMENT, up=True)


def _domain_id(lab: Lab, node: str, vm_id: str) -> int:
    """The id libvirtd gave the VM's running domain: a restarted QEMU gets a new one."""
    conn = libvirt.open(lab.hypervisor(node).uri)
    try:
        return int(conn.lookupByUUIDString(vm_id).ID())
    finally:
        conn.close()


def test_a_management_blip_costs_nothing_and_a_long_cut_fences_the_node(
        ha_lab: StorageLab, node2_bmc: NodeBmc) -> None:
    """The blip: node2's management cable out for longer than the heartbeat timeout but
    within its grace: it is `connecting`, then up again, unfenced, its VM still the same
    QEMU. The long cut (a short grace now): node2 is fenced through its BMC and its HA VM
    restarts on node1. Both nodes' hypervisors are polled every 200 ms: never two copies.

    node2 is the one cut: node1 may still be coming back from the test before (its power
    was cut), and need only be up for the long cut's restart."""
    site, lab = ha_lab.first, ha_lab.lab
    conn = site.connect()
    try:
        system = conn.system_service()
        node1, node2 = site.host_of(conn, "node1"), site.host_of(conn, "node2")
        hosts = system.hosts_service()
        host2 = hosts.host_service(node2.id)
        wait_until(lambda: hosts.host_service(node2.id).get().status == types.HostStatus.UP,
                   180, "node2 to be up")
        _fence_through(host2, node2_bmc)
        cluster = system.clusters_service().list(search="name=Default")[0]
        _set_grace(ha_lab, cluster.id, BLIP_GRACE_S)

        vms = system.vms_service()
        added = vms.add(types.Vm(
            name="lab-blip-vm", cluster=types.Cluster(name="Default"),
            template=types.Template(name="Blank"), memory=128 * MIB,
            high_availability=types.HighAvailability(enabled=True, priority=1),
            placement_policy=types.VmPlacementPolicy(hosts=[types.Host(id=node2.id)])))
        service = vms.vm_service(added.id)
        service.start()
        wait_until(lambda: service.get().status == types.VmStatus.UP, 180, "the VM to be up")
        service.update(types.Vm(placement_policy=types.VmPlacementPolicy(
            affinity=types.VmAffinity.MIGRATABLE, hosts=[])))
        assert _copies(lab, added.id) == ["node2"]
        qemu_before = _domain_id(lab, "node2", added.id)
        seen_before = {e.id for e in system.events_service().list()}

        def new_events() -> list[str]:
            return [e.description for e in system.events_service().list()
                    if e.id not in seen_before]

        # The blip.
        seen: list[list[str]] = []
        statuses: list[types.HostStatus] = []

        def poll() -> None:
            seen.append(_copies(lab, added.id))
            statuses.append(host2.get().status)

        cut_at = time.monotonic()
        with _management_cut(lab, "node2"):
            wait_until(lambda: poll() or (statuses[-1] == types.HostStatus.CONNECTING
                                          and time.monotonic() - cut_at >= BLIP_S),
                       BLIP_GRACE_S - 5, "node2 to be connecting", every=0.2)
        try:
            wait_until(lambda: poll() or statuses[-1] == types.HostStatus.UP,
                       BLIP_GRACE_S, "node2 to be up again", every=0.2)
        except AssertionError:
            site.managed.print_logs()
            print("\n".join(new_events()), statuses[-5:])
            raise
        assert all(copies == ["node2"] for copies in seen), seen
        assert types.HostStatus.NON_RESPONSIVE not in statuses, statuses
        vm = service.get()
        assert vm.status == types.VmStatus.UP and vm.host.id == node2.id
        assert _domain_id(lab, "node2", added.id) == qemu_before  # not restarted
        events = new_events()
        assert (f"Host {node2.name} is not responding; the engine keeps trying to reach it "
                "during its grace period before judging it non responsive") in events
        assert any(d.startswith(f"Host {node2.name} answers again ")
                   and d.endswith("it is up, nothing was done to it or its VMs")
                   for d in events), events
        assert not [d for d in events if "power management" in d or "fenced" in d
                    or "restarted" in d or "after its grace" in d], events

        # The long cut, with a short grace now, once node1 can take the VM.
        wait_until(lambda: hosts.host_service(node1.id).get().status == types.HostStatus.UP,
                   180, "node1 to be up")
        _set_grace(ha_lab, cluster.id, GRACE_S)
        seen_before |= {e.id for e in system.events_service().list()}
        seen.clear()

        def restarted() -> bool:
            seen.append(_copies(lab, added.id))
            now = service.get()
            return now.status == types.VmStatus.UP and now.host is not None \
                and now.host.id == node1.id and seen[-1] == ["node1"]
        with _management_cut(lab, "node2"):
            try:
                wait_until(restarted, 240, "the HA VM to run on node1", every=0.2)
            except AssertionError:
                site.managed.print_logs()
                print("\n".join(new_events()), "copies seen:", seen[-3:])
                raise
        assert all(len(copies) <= 1 for copies in seen), seen  # never two copies
        assert [] in seen  # the old copy went before the new one started
        events = new_events()
        assert any(d.startswith(f"Host {node2.name} is not responding after its grace "
                                f"period of {GRACE_S} s") for d in events), events
        assert any(d.startswith(f"Host {node2.name}: power management restart through "
                                "ipmilan at 127.0.0.1 succeeded") for d in events), events
        assert (f"Highly available VM lab-blip-vm is restarted on host {node1.name}: its host "
                f"{node2.name} failed and its copy there is gone") in events

        service.stop()
        wait_until(lambda: service.get().status == types.VmStatus.DOWN, 120, "the VM to stop")
        service.remove()
    finally:
        conn.close()
