"""Live migration in the lab, through the official SDK: a VM booted from a disk on the
lab's NFS domain moves from its node to the other and back while it runs; each node's own libvirtd
shows it on exactly one of them, and the engine shows it on the host that runs it. The first
migration runs with the VM's own bandwidth limit, slow enough that its job's step shows the
progress libvirt reports; each migration's downtime is recorded.

The guest writes a counter line on its serial console every 100 ms (the test guest's own
counter), read from outside as it reaches the console log (both nodes append to the same
file). While it migrates, both nodes' libvirtd and the API are polled every 200 ms.

Where the nodes' QEMU would lose guest writes in a live migration (QEMU before 9.0 without
KVM, as on this machine: engine.model.migration_safety), the engine migrates the guest
paused for the copy and says so; the counter's checks are the same either way."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from overt.engine.model.migration_safety import live_migration_hazard
from overt.lab.guest import BOOT_MARKER, COUNTER_PREFIX, GuestImage
from overt.lab.lab import Lab
from overt.lab.storage_host import CHAP_USER
from overt.lab.topology import Net, Topology
from overt.node.hypervisor.libvirt_host import version_string
from overt.node.leases.client import LeaseClient
from overt.protocol.ovirt_metadata import parse_metadata
from tests.conftest import TEST_LAB
from tests.e2e.lab.test_shared_storage import (
    CONSOLE_LOG_DIR,
    LEASE_IO_TIMEOUT_S,
    MIB,
    NfsDomain,
    Site,
    StorageLab,
    _boot_disk,
    _new_vm,
    _virtual_size,
    _write_guest,
    nfs_domain,
    open_storage_lab,
)
from tests.support.broker import Broker
from tests.support.demo import wait_until

pytestmark = [pytest.mark.lab, pytest.mark.amqp, pytest.mark.vm, pytest.mark.slow]
__all__ = ["nfs_domain"]  # the shared storage tests' fixture, on this module's lab

NODES = ("node1", "node2")
COUNTER_INTERVAL_MS = 100  # the test guest's counter: a line every 100 ms
# What a counter's gap may exceed a migration's downtime by: the guest's own interval, plus
# 900 ms for the lab. The destination's QEMU is TCG and starts with an empty translation
# cache, so the guest's first instructions there come slowly on a busy machine; the
# console's lines reach the file through virtlogd and this test reads it every 20 ms.
# Measured at a load average of 20: gaps 374-634 ms above QEMU's downtime.
GAP_SLACK_MS = COUNTER_INTERVAL_MS + 900


@pytest.fixture(scope="module")
def storage_lab(rabbitmq: Broker) -> Iterator[StorageLab]:
    """The shared storage lab, its engine telling a source node to reach the destination's
    libvirtd through its socket (the lab's nodes share the machine's file system), by the
    destination's management address."""
    sockets = Topology(TEST_LAB).state_dir / "migration-sockets"
    uri = f"qemu+unix:///system?socket={sockets}/{{address}}.sock"
    with open_storage_lab(rabbitmq, OVERT_MIGRATION_DESTINATION_URI=uri,
                          OVERT_MIGRATION_PROGRESS_INTERVAL_S="0.3",
                          OVERT_LEASE_IO_TIMEOUT_S=str(LEASE_IO_TIMEOUT_S)) as opened:
        sockets.mkdir(exist_ok=True)
        for node in NODES:
            link = sockets / f"{_address(opened.lab, node)}.sock"
            link.unlink(missing_ok=True)
            link.symlink_to(opened.lab.hypervisor(node).socket)
        yield opened


def _address(lab: Lab, node: str) -> str:
    return str(lab.topology.host(node).address(Net.MANAGEMENT))


def _runs_on(lab: Lab, vm_id: str, *, running_only: bool = False) -> list[str]:
    """The nodes whose libvirtd has the VM active (`running_only`: not paused), as each
    reports it. During the handover the source keeps its copy paused until the
    destination runs, then removes it: a VM may be active on two nodes for a moment,
    running on one only."""
    found = []
    for node in NODES:
        conn = libvirt.open(lab.hypervisor(node).uri)
        try:
            try:
                dom = conn.lookupByUUIDString(vm_id)
                state = dom.state()[0] if dom.isActive() else None
            except libvirt.libvirtError:
                state = None
            if state is not None and (not running_only or state == libvirt.VIR_DOMAIN_RUNNING):
                found.append(node)
        finally:
            conn.close()
    return found


@dataclass
class _Sample:
    """One poll: where each node's libvirtd has the VM running or paused (a paused copy runs
    no guest code: the destination while memory streams in, the source from the switch-over
    until it is removed), and the hosts the API lists it on (`search=host=NAME`)."""

    running: list[str]
    paused: list[str]
    listed_on: list[str]


@dataclass
class _Watch:
    """Watches a VM from outside while it migrates: the guest's counter lines as they reach
    its console log (every 20 ms; when each number first appeared), and both nodes'
    hypervisors and the API (every 200 ms)."""

    log: Path
    vm_id: str
    hypervisor_uris: dict[str, str]
    host_names: dict[str, str]  # node -> the engine's host name
    connect: Any
    counts: list[tuple[int, float]] = field(default_factory=list)
    samples: list[_Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> _Watch:
        self._threads = [threading.Thread(target=self._guarded, args=(fn,), daemon=True)
                         for fn in (self._read_counter, self._poll)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def last_count(self) -> int:
        return self.counts[-1][0] if self.counts else -1

    def _guarded(self, loop: Any) -> None:
        try:
            loop()
        except Exception as error:  # reported by the test, not lost in its thread
            self.failures.append(f"{loop.__name__}: {error!r}")

    def _read_counter(self) -> None:
        pattern = re.compile(re.escape(COUNTER_PREFIX) + r"(\d+)\r?$")
        offset, pending = self.log.stat().st_size, b""
        with self.log.open("rb") as handle:
            while not self._stop.is_set():
                handle.seek(offset)
                chunk = handle.read()
                now = time.monotonic()
                offset += len(chunk)
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    found = pattern.search(line.decode(errors="replace"))
                    if found:
                        self.counts.append((int(found.group(1)), now))
                time.sleep(0.02)

    def _poll(self) -> None:
        conns = {node: libvirt.open(uri) for node, uri in self.hypervisor_uris.items()}
        api = self.connect()
        vms = api.system_service().vms_service()
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                running, paused = [], []
                for node, conn in conns.items():
                    try:
                        state = conn.lookupByUUIDString(self.vm_id).state()[0]
                    except libvirt.libvirtError:
                        continue
                    if state == libvirt.VIR_DOMAIN_RUNNING:
                        running.append(node)
                    elif state == libvirt.VIR_DOMAIN_PAUSED:
                        paused.append(node)
                self.samples.append(_Sample(running, paused, self._listed_on(vms)))
                self._stop.wait(max(0.0, 0.2 - (time.monotonic() - started)))
        finally:
            api.close()
            for conn in conns.values():
                conn.close()

    def _listed_on(self, vms: Any) -> list[str]:
        """The hosts the API lists the VM on, one search per host. Those searches are not one
        snapshot: a switch-over between two of them shows the VM on both hosts or on none.
        So the searches are repeated until two rounds in a row agree (one switch-over
        cannot fall into both)."""
        def round_of_searches() -> list[str]:
            return [node for node, name in self.host_names.items()
                    if any(v.id == self.vm_id for v in vms.list(search=f"host={name}"))]
        last = round_of_searches()
        while (again := round_of_searches()) != last:
            last = again
        return again


def _max_downtime_ms(lab: Lab, node: str, vm_id: str) -> int | None:
    """The max downtime QEMU has for the VM's migration on `node` (None: not there)."""
    conn = libvirt.open(lab.hypervisor(node).uri)
    try:
        found = conn.lookupByUUIDString(vm_id).migrateGetMaxDowntime(0)
    except libvirt.libvirtError:
        return None
    finally:
        conn.close()
    # libvirt-python answers None, not an error, when the domain left meanwhile (the
    # migration ended between the lookup and the call)
    return int(found) if found is not None else None


def _migrate(site_conn: sdk.Connection, storage_lab: StorageLab, vm_id: str,
             to: str, downtimes: list[int | None] | None = None
             ) -> tuple[str, list[types.Step]]:
    """Migrate the VM to `to` and wait until it runs there only; the migration's job and
    its steps as they were seen while it ran (and the source's max downtime in
    `downtimes`)."""
    source = next(node for node in NODES if node != to)
    service = site_conn.system_service().vms_service().vm_service(vm_id)
    jobs = site_conn.system_service().jobs_service()
    before = {j.id for j in jobs.list()}
    host = storage_lab.first.host_of(site_conn, to)
    service.migrate(host=types.Host(id=host.id))
    [job] = [j for j in jobs.list() if j.id not in before and j.description.startswith(
        "Migrating VM")]
    seen: set[tuple[str, ...]] = set()
    steps: list[types.Step] = []

    def arrived() -> bool:
        seen.add(tuple(_runs_on(storage_lab.lab, vm_id, running_only=True)))
        steps.extend(jobs.job_service(job.id).steps_service().list())
        if downtimes is not None:
            downtimes.append(_max_downtime_ms(storage_lab.lab, source, vm_id))
        vm = service.get()
        assert vm.host is not None, "the engine showed the VM on no host"
        if vm.status == types.VmStatus.UP and vm.host.id != host.id:  # failed: say why
            failed = [e.description for e in site_conn.system_service().events_service().list()
                      if "Migration of VM lab-migr-vm failed" in e.description]
            assert not failed, failed
        return vm.status == types.VmStatus.UP and vm.host.id == host.id
    wait_until(arrived, 180, f"the VM to be up on {to}", every=0.2)
    assert all(len(nodes) <= 1 for nodes in seen), seen  # never running on two nodes
    assert _runs_on(storage_lab.lab, vm_id, running_only=True) == [to]
    wait_until(lambda: _runs_on(storage_lab.lab, vm_id) == [to], 30,
               f"the VM to be on {to} only", every=0.2)
    return job.id, steps


def _live_would_lose_writes(lab: Lab, vm_id: str) -> bool:
    """The VM's node runs it on a QEMU whose live migration loses guest writes."""
    conn = libvirt.open(lab.hypervisor("node1").uri)
    try:
        domain_type = re.search(r"<domain type='(\w+)'",
                                conn.lookupByUUIDString(vm_id).XMLDesc(0))
        assert domain_type, "the VM's domain has no type"
        return live_migration_hazard({"virt_mode": domain_type.group(1),
                                      "qemu_version": version_string(conn.getVersion())}
                                     ) is not None
    finally:
        conn.close()


def _downtime_ms(text: str) -> int:
    """The downtime a migration's step or event records ("..., downtime 170 ms, ...")."""
    found = re.search(r"downtime (\d+) ms, [\d.]+ MiB transferred", text)
    assert found, f"no downtime figure in {text!r}"
    return int(found.group(1))


def test_a_vm_on_nfs_migrates_to_node2_and_back_while_it_runs(
        storage_lab: StorageLab, nfs_domain: NfsDomain, guest_image: GuestImage) -> None:
    site = storage_lab.first
    disk_id = _boot_disk(storage_lab, site, nfs_domain.id, guest_image)
    _new_vm(site, "lab-migr-vm", disk_id)
    conn = site.connect()
    try:
        vms = conn.system_service().vms_service()
        vm = vms.list(search="name=lab-migr-vm")[0]
        service = vms.vm_service(vm.id)
        log = CONSOLE_LOG_DIR / f"{vm.id}.log"
        log.unlink(missing_ok=True)
        service.update(types.Vm(placement_policy=types.VmPlacementPolicy(  # starts on node1
            hosts=[types.Host(id=site.host_of(conn, "node1").id)])))
        service.start()
        wait_until(lambda: service.get().status == types.VmStatus.UP, 180, "the VM to be up")
        service.update(types.Vm(placement_policy=types.VmPlacementPolicy(
            affinity=types.VmAffinity.MIGRATABLE, hosts=[])))
        wait_until(lambda: log.exists() and BOOT_MARKER in log.read_text(errors="replace"),
                   180, "the guest to boot")
        [first] = _runs_on(storage_lab.lab, vm.id)
        assert first == "node1"
        other = "node2"
        own = site.host_of(conn, first)
        watch = _Watch(log, vm.id, {n: storage_lab.lab.hypervisor(n).uri for n in NODES},
                       {n: site.host_of(conn, n).name for n in NODES}, site.connect)
        assert service.get().host.id == own.id

        with pytest.raises(sdk.Error) as refused:
            service.migrate(host=types.Host(id=own.id))
        assert refused.value.code == 409 and "it already runs on host" in str(refused.value)

        # Slow enough (200 Mbps) that the job's step shows libvirt's progress; the VM's
        # max downtime is set on the source's QEMU while it migrates.
        service.update(types.Vm(migration_downtime=450, migration=types.MigrationOptions(
            auto_converge=types.InheritableBoolean.TRUE,
            bandwidth=types.MigrationBandwidth(
                assignment_method=types.MigrationBandwidthAssignmentMethod.CUSTOM,
                custom_value=200))))
        downtimes: list[int | None] = []
        with watch, _console_on_failure(log):
            wait_until(lambda: watch.last_count() >= 0, 30, "the guest's counter")
            windows = [time.monotonic()]
            job_id, steps = _migrate(conn, storage_lab, vm.id, other, downtimes)
            windows.append(time.monotonic())
            service.update(types.Vm(migration=types.MigrationOptions(
                bandwidth=types.MigrationBandwidth(assignment_method=(
                    types.MigrationBandwidthAssignmentMethod.HYPERVISOR_DEFAULT)))))
            windows.append(time.monotonic())
            back_job_id, _ = _migrate(conn, storage_lab, vm.id, first)
            windows.append(time.monotonic())
            arrived = watch.last_count()  # and it goes on counting on its first node
            wait_until(lambda: watch.last_count() >= arrived + 10, 30, "the counter to go on")
        assert not watch.failures, watch.failures
        assert 450 in downtimes, downtimes
        paused = _live_would_lose_writes(storage_lab.lab, vm.id)
        during = [s for s in steps if s.progress is not None and s.progress < 100]
        assert during, [s.description for s in steps]
        assert all(re.search(r": \d+% of [\d.]+ MiB sent, [\d.]+ MiB remaining, iteration \d+",
                             s.description) for s in during), [s.description for s in during]
        job = conn.system_service().jobs_service().job_service(job_id)
        # The job records its figures once the source's node has answered.
        wait_until(lambda: job.get().status != types.JobStatus.STARTED, 30, "the job to end")
        [last] = job.steps_service().list()
        assert last.progress == 100 and last.status == types.StepStatus.FINISHED
        assert _downtime_ms(last.description) > 0
        assert last.description.endswith(", guest paused") == paused, last.description

        back = conn.system_service().jobs_service().job_service(back_job_id)
        wait_until(lambda: back.get().status != types.JobStatus.STARTED, 30, "the job to end")
        measured = [_downtime_ms(last.description),
                    _downtime_ms(back.steps_service().list()[-1].description)]
        _assert_the_guest_never_stopped_longer_than(watch, windows, measured)
        _assert_the_vm_was_always_on_one_node(watch)
        events = conn.system_service().events_service()
        # The job records its outcome just after the monitor shows the VM arrived.
        wait_until(lambda: sum("VM lab-migr-vm migrated from host" in e.description
                               for e in events.list()) == 2, 30, "both migrations recorded")
        migrated = [e.description for e in events.list()
                    if "VM lab-migr-vm migrated from host" in e.description]
        assert all(_downtime_ms(text) > 0 for text in migrated), migrated
        warned = [e.description for e in events.list()
                  if "VM lab-migr-vm is migrated with its guest paused" in e.description]
        assert len(warned) == (2 if paused else 0), warned
        service.stop()
        wait_until(lambda: service.get().status == types.VmStatus.DOWN, 120, "the VM to stop")
    finally:
        conn.close()


@contextmanager
def _console_on_failure(log: Path) -> Iterator[None]:
    """What the guest last said on its console, when the test fails (e.g. a kernel oops)."""
    try:
        yield
    except AssertionError:
        print("the guest's console, last lines:", *log.read_text(errors="replace")
              .splitlines()[-40:], sep="\n")
        raise


def _assert_the_guest_never_stopped_longer_than(watch: _Watch, windows: list[float],
                                                measured_ms: list[int]) -> None:
    """No counter value is missing or repeated from the first seen to the last, and no gap
    between two values exceeds the downtime QEMU measured for the migration it falls in
    (outside migrations: none) by more than GAP_SLACK_MS."""
    numbers = [n for n, _ in watch.counts]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers
    spans = list(zip(windows[::2], windows[1::2], strict=True))
    worst: list[float] = [0.0] * (len(spans) + 1)  # per migration, then outside them
    for (_, before), (_, after) in zip(watch.counts, watch.counts[1:], strict=False):
        gap_ms = (after - before) * 1000
        index = next((i for i, (start, end) in enumerate(spans) if start <= after <= end),
                     len(spans))
        worst[index] = max(worst[index], gap_ms)
    print(f"counter: {len(numbers)} values, largest gap per migration {worst[:-1]} ms "
          f"(QEMU's downtime {measured_ms} ms), outside migrations {worst[-1]:.0f} ms")
    for gap_ms, downtime_ms in zip(worst, [*measured_ms, 0], strict=True):
        assert gap_ms <= downtime_ms + GAP_SLACK_MS, (worst, measured_ms)


def _assert_the_vm_was_always_on_one_node(watch: _Watch) -> None:
    """At every poll: running on at most one node's hypervisor, and active (running, or
    paused during the switch-over) on at least one; the API lists it on exactly one host."""
    assert len(watch.samples) > 10, watch.samples
    for sample in watch.samples:
        assert len(sample.running) <= 1, sample
        assert sample.running or sample.paused, sample
        assert len(sample.listed_on) == 1, sample
    assert any(s.running == ["node2"] for s in watch.samples)  # it did move
    assert any(s.running == ["node1"] for s in watch.samples)


def _host_status(conn: sdk.Connection, host_id: str) -> types.HostStatus:
    return conn.system_service().hosts_service().host_service(host_id).get().status


def test_maintenance_drains_a_node_of_its_three_running_guests(
        storage_lab: StorageLab, nfs_domain: NfsDomain, guest_image: GuestImage) -> None:
    """The SDK's `deactivate` on a node running three guests, one of them pinned to it:
    the drain fails with the reason and nothing moves or stops. Once that guest may move,
    `deactivate` moves all three to the other node (each node's libvirtd shows them
    running there only), then the node is in maintenance; `activate` brings it back. The
    first has a VM lease: it moves with it (node2's keeper holds it, node1's lets it go
    without stopping anything)."""
    site = storage_lab.first
    names = ("lab-drain-1", "lab-drain-2", "lab-drain-3")
    for name in names:
        _new_vm(site, name, _boot_disk(storage_lab, site, nfs_domain.id, guest_image))
    conn = site.connect()
    try:
        vms = conn.system_service().vms_service()
        node1, node2 = site.host_of(conn, "node1"), site.host_of(conn, "node2")
        services = [vms.vm_service(vms.list(search=f"name={name}")[0].id) for name in names]
        services[0].update(types.Vm(lease=types.StorageDomainLease(
            storage_domain=types.StorageDomain(id=nfs_domain.id))))
        for service in services:  # all on node1: placed there to start, then free to move
            service.update(types.Vm(placement_policy=types.VmPlacementPolicy(
                hosts=[types.Host(id=node1.id)])))
            service.start()
        # Up as soon as QEMU runs: the guests migrate while they boot (the test above
        # migrates a booted guest; booting three more in TCG would double this test's time).
        for service in services:
            vm = wait_until(lambda s=service: (v := s.get()).status == types.VmStatus.UP and v,
                            180, "the VM to be up")
            assert _runs_on(storage_lab.lab, vm.id, running_only=True) == ["node1"]
            service.update(types.Vm(placement_policy=types.VmPlacementPolicy(
                affinity=types.VmAffinity.MIGRATABLE, hosts=[])))
            shown = service.get().placement_policy
            assert shown.affinity == types.VmAffinity.MIGRATABLE and not shown.hosts

        host_service = conn.system_service().hosts_service().host_service(node1.id)
        pinned = services[2]
        pinned.update(types.Vm(placement_policy=types.VmPlacementPolicy(
            affinity=types.VmAffinity.PINNED, hosts=[types.Host(id=node1.id)])))
        events = conn.system_service().events_service()
        host_service.deactivate()
        failed = wait_until(lambda: [e.description for e in events.list() if e.description
                                     .startswith(f"Host {node1.name} failed to switch to "
                                                 "maintenance")], 60, "the drain to fail")
        assert "VM lab-drain-3 is pinned to its host" in failed[0], failed
        assert _host_status(conn, node1.id) == types.HostStatus.UP
        for service in services:  # nothing moved, nothing stopped
            vm = service.get()
            assert vm.status == types.VmStatus.UP and vm.host.id == node1.id
            assert _runs_on(storage_lab.lab, vm.id, running_only=True) == ["node1"]
        pinned.update(types.Vm(placement_policy=types.VmPlacementPolicy(
            affinity=types.VmAffinity.MIGRATABLE, hosts=[])))

        host_service.deactivate()
        wait_until(lambda: _host_status(conn, node1.id) == types.HostStatus.MAINTENANCE, 180,
                   "node1 to be in maintenance", every=0.2)
        for service in services:
            vm = service.get()
            assert vm.status == types.VmStatus.UP and vm.host.id == node2.id
            assert _runs_on(storage_lab.lab, vm.id, running_only=True) == ["node2"]
            wait_until(lambda v=vm: _runs_on(storage_lab.lab, v.id) == ["node2"], 30,
                       f"{vm.name} to be on node2 only", every=0.2)
        descriptions = [e.description for e in conn.system_service().events_service().list()]
        assert any(d.startswith(f"Host {node1.name} was switched to maintenance")
                   for d in descriptions)
        leased = services[0].get().id
        assert leased in _keeper_status(site, "node2")["vms"]  # taken over at the switch
        wait_until(lambda: leased not in _keeper_status(site, "node1")["vms"], 30,
                   "node1's keeper to let the lease go")
        assert not any(k["vm_id"] == leased for k in _keeper_status(site, "node1")["kills"])
        assert not any("lease could not move" in d for d in descriptions), descriptions

        host_service.activate()
        wait_until(lambda: _host_status(conn, node1.id) == types.HostStatus.UP, 120,
                   "node1 to be up again")
        for service in services:
            service.stop()
        for service in services:
            wait_until(lambda s=service: s.get().status == types.VmStatus.DOWN, 120,
                       "the VM to stop")
    finally:
        conn.close()


def _keeper_status(site: Site, node: str) -> dict[str, Any]:
    return asyncio.run(LeaseClient(site.keeper_dir(node) / "keeper.sock").status())


def _secrets_of(lab: Lab, node: str) -> set[str]:
    """The iSCSI secrets Overt defined in the node's libvirtd."""
    conn = libvirt.open(lab.hypervisor(node).uri)
    try:
        return {s.usageID() for s in conn.listAllSecrets(0)
                if s.usageID().startswith("overtchap")}
    finally:
        conn.close()


def _chap_domain_disk(storage_lab: StorageLab, conn: sdk.Connection,
                      guest_image: GuestImage) -> tuple[str, str]:
    """An active domain on the lab's CHAP target and a disk on it holding the test guest:
    (domain id, disk id)."""
    server = storage_lab.lab.storage_server()
    target, secret = server.chap_target_iqn, server.chap_secret()
    host1 = storage_lab.first.host_of(conn, "node1")
    sds = conn.system_service().storage_domains_service()
    added = sds.add(types.StorageDomain(
        name="lab-chap-migr", host=types.Host(id=host1.id), type=types.StorageDomainType.DATA,
        storage=types.HostStorage(type=types.StorageType.ISCSI, logical_units=[
            types.LogicalUnit(id="1", address=storage_lab.nfs_address, port=3260,
                              target=target, username=CHAP_USER, password=secret)])))
    sd = sds.storage_domain_service(added.id)
    wait_until(lambda: sd.get().status == types.StorageDomainStatus.UNATTACHED, 60,
               "the CHAP domain to be written")
    dc = conn.system_service().data_centers_service().list(search="name=Default")[0]
    attached = conn.system_service().data_centers_service().data_center_service(
        dc.id).storage_domains_service()
    attached.add(types.StorageDomain(id=added.id))
    wait_until(lambda: attached.storage_domain_service(added.id).get().status
               == types.StorageDomainStatus.ACTIVE, 60, "the CHAP domain to be active")
    disks = conn.system_service().disks_service()
    disk = disks.add(types.Disk(name="lab-chap-migr-disk", format=types.DiskFormat.COW,
                                provisioned_size=_virtual_size(guest_image),
                                storage_domains=[types.StorageDomain(id=added.id)]))
    wait_until(lambda: disks.disk_service(disk.id).get().status == types.DiskStatus.OK,
               60, "the disk on the CHAP domain to be made")
    backing = storage_lab.lab.topology.host_dir(storage_lab.lab.topology.storage) / \
        "chap-lun1.img"
    with backing.open("rb") as f:
        metadata = parse_metadata(f.read(MIB).split(b"\0", 1)[0].decode())
    [record] = [v for k, v in metadata.items() if k.startswith("VOL_")]
    _image, offset, length = record.split(",")[:3]
    _write_guest(storage_lab, guest_image, target, secret, int(offset), int(length))
    return added.id, disk.id


def test_a_leased_vm_on_a_chap_domain_migrates_to_node2(
        storage_lab: StorageLab, guest_image: GuestImage) -> None:
    """A VM booted from a disk on the lab's CHAP target, with its lease on that domain,
    migrates live from node1 to node2: node2's libvirtd gets the iSCSI secret before the
    VM comes (it could not start the incoming VM otherwise), node2's keeper takes the
    lease over (its qemu-storage-daemon logs in with CHAP), and node1 keeps no secret once
    the VM has left."""
    site = storage_lab.first
    conn = site.connect()
    try:
        domain_id, disk_id = _chap_domain_disk(storage_lab, conn, guest_image)
        _new_vm(site, "lab-chap-migr-vm", disk_id)
        vms = conn.system_service().vms_service()
        vm = vms.list(search="name=lab-chap-migr-vm")[0]
        service = vms.vm_service(vm.id)
        node1, node2 = site.host_of(conn, "node1"), site.host_of(conn, "node2")
        service.update(types.Vm(lease=types.StorageDomainLease(
            storage_domain=types.StorageDomain(id=domain_id)),
            placement_policy=types.VmPlacementPolicy(hosts=[types.Host(id=node1.id)])))
        log = CONSOLE_LOG_DIR / f"{vm.id}.log"
        service.start()
        wait_until(lambda: service.get().status == types.VmStatus.UP, 180, "the VM to be up")
        wait_until(lambda: log.exists() and BOOT_MARKER in log.read_text(errors="replace"),
                   120, "the guest to boot from the CHAP disk")
        assert _runs_on(storage_lab.lab, vm.id, running_only=True) == ["node1"]
        assert vm.id in _keeper_status(site, "node1")["vms"]
        assert _secrets_of(storage_lab.lab, "node1") and not _secrets_of(storage_lab.lab,
                                                                          "node2")
        service.update(types.Vm(placement_policy=types.VmPlacementPolicy(
            affinity=types.VmAffinity.MIGRATABLE, hosts=[])))

        service.migrate(host=types.Host(id=node2.id))
        wait_until(lambda: (v := service.get()).status == types.VmStatus.UP
                   and v.host.id == node2.id, 180, "the VM to run on node2")
        wait_until(lambda: _runs_on(storage_lab.lab, vm.id) == ["node2"], 30,
                   "the VM to be on node2 only", every=0.2)
        assert _runs_on(storage_lab.lab, vm.id, running_only=True) == ["node2"]
        wait_until(lambda: vm.id in _keeper_status(site, "node2")["vms"], 30,
                   "node2's keeper to hold the lease")
        wait_until(lambda: vm.id not in _keeper_status(site, "node1")["vms"], 30,
                   "node1's keeper to let the lease go")
        assert not any(k["vm_id"] == vm.id for k in _keeper_status(site, "node2")["kills"])
        secret = storage_lab.lab.storage_server().chap_secret()
        assert _secrets_of(storage_lab.lab, "node2")
        wait_until(lambda: not _secrets_of(storage_lab.lab, "node1"), 30,
                   "node1 to drop the secret")
        descriptions = [e.description for e in conn.system_service().events_service().list()]
        assert not any("lease could not move" in d for d in descriptions), descriptions
        assert not any(secret in d for d in descriptions)
        service.stop()
        wait_until(lambda: service.get().status == types.VmStatus.DOWN, 120, "the VM to stop")
        wait_until(lambda: not _secrets_of(storage_lab.lab, "node2"), 30,
                   "node2 to drop the secret")
    finally:
        conn.close()
