"""Shared storage domains in the lab, through the official SDK. NFS: a domain laid out
on the storage host's nfs-ganesha export, attached and active; a disk on it runs a VM
on node1 and then on node2; detached, the domain is imported by a second engine (its
own database and broker vhost) with its disk, which boots there too. iSCSI (tgt): a
domain on one LUN whose disk is an extent of it boots a VM on either node; its snapshots
(new extents) restored and merged; a VM lease in its lease area; a direct LUN disk.
Disks move between the two: a running guest's live, a down VM's with its snapshots."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import libvirt
import libvirt_qemu
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from ovirt_imageio import client

from overt.engine.db.database import Database
from overt.engine.db.tables import VmLeaseRenewal
from overt.engine.queries import host_renews_storage_lease, vm_lease_expired
from overt.lab.guest import BOOT_MARKER, COUNTER_PREFIX, GuestImage
from overt.lab.lab import Lab
from overt.lab.storage_host import CHAP_USER, LUN_SIZE
from overt.lab.topology import Net, Topology
from overt.node.leases.client import LeaseClient
from overt.node.storage import iscsi_domain
from overt.protocol.ovirt_metadata import parse_metadata
from overt.protocol.vm import IscsiSource, LeaseSpec
from overt.system.daemons import SYSTEM_RABBITMQ, ensure_libvirtd
from tests.conftest import TEST_LAB, require_root
from tests.support.broker import Broker, close_broker, open_broker
from tests.support.cli import overt
from tests.support.demo import wait_until
from tests.support.managed import ManagedSite

pytestmark = [pytest.mark.lab, pytest.mark.amqp, pytest.mark.vm, pytest.mark.slow]

ARGS = ["--prefix", TEST_LAB.prefix]
MIB = 2**20
CONSOLE_LOG_DIR = Path("/var/log/overt/console")
STORAGE_PROBE_INTERVAL_S = 2.0  # each host's reach of the active domains, asked this often
TOP_OF_CHAIN = "00000000-0000-0000-0000-000000000000"
AGENT_ENV = {"OVERT_NODE_ANNOUNCE_INTERVAL_S": "0.5",
             # the lease keeper's renewals reach the engine in the stats
             "OVERT_NODE_STATS_INTERVAL_S": "3"}
LEASE_IO_TIMEOUT_S = 1.0  # VM leases: renewed every 2 s, the VM stopped after 6 s, free after 8 s


@dataclass
class Site:
    """One engine (its own database and broker vhost) with agents on some lab nodes."""

    lab: Lab
    name: str
    base: Path
    broker: Broker
    managed: ManagedSite
    nodes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    node_port: int = 54321  # a second site's agents on the same lab node need their own

    def connect(self) -> sdk.Connection:
        return self.managed.connect()

    def agent_argv(self, node: str) -> list[str]:
        """`overt node` on `node`, as run inside the node's namespaces (with AGENT_ENV)."""
        return [sys.executable, "-m", "overt", "node", "--bus", "amqp", "--engine-url",
                f"https://{self.lab.topology.engine_address()}:{self.managed.gateway_port}",
                "--engine-ca-file", str(self.managed.ca_file), "--libvirt-uri", "qemu:///system",
                "--data-dir", str(self.base / node / "data"),
                "--storage-dir", str(self.base / node / "images"), "--heartbeat-interval", "1",
                "--port", str(self.node_port)]

    def agent_log(self, node: str) -> Path:
        return self.managed.log(f"{self.name}-{node}")

    def start_node(self, node: str) -> None:
        argv = [sys.executable, "-m", "overt", "lab", "exec", *ARGS, node, "--",
                *self.agent_argv(node)]
        with self.agent_log(node).open("ab") as log:
            self.nodes[node] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **AGENT_ENV})

    def host_of(self, conn: sdk.Connection, node: str) -> types.Host:
        address = str(self.lab.topology.host(node).address(Net.MANAGEMENT))
        return next(h for h in conn.system_service().hosts_service().list()
                    if h.address == address)

    def keeper_dir(self, node: str) -> Path:
        """Where `overt node` keeps its lease keeper's socket, state and kill records."""
        return self.base / node / "data" / "leases"

    def stop(self) -> None:
        for process in self.nodes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.nodes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        for node in self.nodes:  # the keepers outlive their agents by design
            with contextlib.suppress(OSError, ValueError):
                os.kill(int((self.keeper_dir(node) / "keeper.pid").read_text()), signal.SIGTERM)
        self.managed.stop_all()
        self.managed.print_logs()


def _start_site(lab: Lab, name: str, base: Path, broker: Broker, nodes: list[str],
                node_port: int = 54321, **engine_env: str) -> Site:
    address = lab.topology.engine_address()
    managed = ManagedSite(base / name, f"sqlite:///{base}/{name}.db",
                          broker.engine_url_now(), broker.admin_url)
    managed.engine("engine", OVERT_PUBLIC_ADDRESS=str(address),
                   OVERT_BROKER_NODE_URL=f"amqp://{address}:5672",
                   OVERT_BROKER_ALLOW_PLAIN="1", **engine_env)
    site = Site(lab, name, base / name, broker, managed, node_port=node_port)
    managed.wait_for_api()
    for node in nodes:
        site.start_node(node)
    conn = site.connect()
    try:
        managed.approve_all(conn, len(nodes))
    finally:
        conn.close()
    return site


@dataclass
class StorageLab:
    lab: Lab
    base: Path
    first: Site
    brokers: list[Broker]

    @property
    def nfs_address(self) -> str:
        return str(self.lab.topology.host("storage").address(Net.STORAGE))

    @property
    def export_dir(self) -> Path:
        return self.lab.topology.nfs_export_dir()


@pytest.fixture(scope="module")
def storage_lab(rabbitmq: Broker) -> Iterator[StorageLab]:
    """The test lab (left as it was found when it was already up) and a first engine
    with agents on node1 and node2; the export starts without storage domains."""
    with open_storage_lab(rabbitmq, OVERT_LEASE_IO_TIMEOUT_S=str(LEASE_IO_TIMEOUT_S),
                          OVERT_STORAGE_PROBE_INTERVAL_S=str(STORAGE_PROBE_INTERVAL_S),
                          OVERT_IMAGEIO_PORT="0") as opened:
        yield opened


@contextlib.contextmanager
def open_storage_lab(rabbitmq: Broker, **engine_env: str) -> Iterator[StorageLab]:
    """`storage_lab`, its engine run with `engine_env` added to its environment."""
    require_root()
    ensure_libvirtd()
    lab = Lab(Topology(TEST_LAB))
    was_up = (lab.topology.state_dir / "lab.json").exists()
    built = overt("lab", "up", "--nodes", str(TEST_LAB.nodes), *ARGS,
                  "--address-block", TEST_LAB.address_block)
    assert built.returncode == 0, built.stdout + built.stderr
    for entry in lab.topology.nfs_export_dir().iterdir():
        if _is_uuid(entry.name):  # domains of an earlier run
            shutil.rmtree(entry)
    for lun in ("lun1", "lun2", "chap-lun1"):
        with (lab.topology.host_dir(lab.topology.storage) / f"{lun}.img").open("r+b") as f:
            f.write(bytes(MIB))  # an earlier run's iSCSI domain metadata
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-storage-lab-"))
    base.chmod(0o755)
    first: Site | None = None
    try:
        first = _start_site(lab, "first", base, rabbitmq, ["node1", "node2"], **engine_env)
        yield StorageLab(lab, base, first, [])
    finally:
        if first is not None:
            first.stop()
        if not was_up:
            overt("lab", "down", *ARGS)
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class NfsDomain:
    id: str
    dc_id: str
    name: str


@pytest.fixture(scope="module")
def nfs_domain(storage_lab: StorageLab) -> NfsDomain:
    """An NFS data domain added through the SDK on the lab's export, attached and active."""
    return add_nfs_domain(storage_lab)


def add_nfs_domain(storage_lab: StorageLab) -> NfsDomain:
    """`nfs_domain` for any lab opened with `open_storage_lab`."""
    conn = storage_lab.first.connect()
    try:
        host1 = storage_lab.first.host_of(conn, "node1")
        sds = conn.system_service().storage_domains_service()
        added = sds.add(types.StorageDomain(
            name="lab-nfs", type=types.StorageDomainType.DATA, host=types.Host(name=host1.name),
            storage=types.HostStorage(type=types.StorageType.NFS,
                                      address=storage_lab.nfs_address, path="/export")))
        sd = sds.storage_domain_service(added.id)
        wait_until(lambda: sd.get().status == types.StorageDomainStatus.UNATTACHED, 120,
                   "the domain to be laid out")
        dc = conn.system_service().data_centers_service().list(search="name=Default")[0]
        attached = conn.system_service().data_centers_service().data_center_service(
            dc.id).storage_domains_service()
        attached.add(types.StorageDomain(id=added.id))
        wait_until(lambda: attached.storage_domain_service(added.id).get().status
                   == types.StorageDomainStatus.ACTIVE, 120, "the domain to be active")
        return NfsDomain(added.id, dc.id, "lab-nfs")
    finally:
        conn.close()


def test_an_nfs_domain_is_laid_out_in_ovirts_format_and_attached(
        storage_lab: StorageLab, nfs_domain: NfsDomain) -> None:
    metadata_file = storage_lab.export_dir / nfs_domain.id / "dom_md" / "metadata"
    metadata = parse_metadata(metadata_file.read_text())
    assert metadata["SDUUID"] == nfs_domain.id
    assert metadata["CLASS"] == "Data"
    assert metadata["TYPE"] == "NFS"
    assert metadata["POOL_UUID"] == nfs_domain.dc_id
    assert metadata["REMOTE_PATH"] == f"{storage_lab.nfs_address}:/export"
    assert {p.name for p in (storage_lab.export_dir / nfs_domain.id / "dom_md").iterdir()} >= {
        "metadata", "ids", "leases", "inbox", "outbox"}
    conn = storage_lab.first.connect()
    try:
        sd = conn.system_service().storage_domains_service().storage_domain_service(
            nfs_domain.id).get()
        assert sd.storage.type == types.StorageType.NFS
        assert sd.storage.address == storage_lab.nfs_address
        assert sd.available > 0
        events = [e.description for e in conn.system_service().events_service().list()]
        assert any("Storage Domain lab-nfs was attached" in e for e in events)
    finally:
        conn.close()


def test_a_second_nfs_domain_on_the_same_export_is_refused(
        storage_lab: StorageLab, nfs_domain: NfsDomain) -> None:
    conn = storage_lab.first.connect()
    try:
        sds = conn.system_service().storage_domains_service()
        host1 = storage_lab.first.host_of(conn, "node1")
        before = len(sds.list())
        with pytest.raises(sdk.Error) as refused:
            sds.add(types.StorageDomain(
                name="lab-nfs-again", type=types.StorageDomainType.DATA,
                host=types.Host(id=host1.id),
                storage=types.HostStorage(type=types.StorageType.NFS,
                                          address=storage_lab.nfs_address, path="/export")))
        assert refused.value.code == 409
        assert "already used by storage domain lab-nfs" in str(refused.value)
        with pytest.raises(sdk.Error) as bad:
            sds.add(types.StorageDomain(
                name="lab-nfs-bad", type=types.StorageDomainType.DATA,
                host=types.Host(id=host1.id),
                storage=types.HostStorage(type=types.StorageType.NFS,
                                          address="nfs://x;rm", path="/export")))
        assert bad.value.code == 400
        assert len(sds.list()) == before
        # The server refuses a path it does not export: the add fails on the host, and
        # leaves no domain behind, only an event saying why.
        wrong = sds.add(types.StorageDomain(
            name="lab-nfs-wrong", type=types.StorageDomainType.DATA,
            host=types.Host(id=host1.id),
            storage=types.HostStorage(type=types.StorageType.NFS,
                                      address=storage_lab.nfs_address, path="/no-such-export")))
        wait_until(lambda: wrong.id not in {s.id for s in sds.list()}, 60,
                   "the failed domain to be gone")
        events = [e.description for e in conn.system_service().events_service().list()]
        assert any("Adding storage domain lab-nfs-wrong failed" in e
                   and "does not let this host mount /no-such-export" in e for e in events)
        assert len(sds.list()) == before
    finally:
        conn.close()


def test_a_node_cut_off_from_the_nfs_server_is_non_operational_until_it_reaches_it(
        storage_lab: StorageLab, nfs_domain: NfsDomain) -> None:
    """node1's namespace rejects everything sent to the storage host: the engine sees node1
    non operational with the reason and an event naming the domain, node2 stays up. node2
    cut off too, no host reaches the domain: it is inactive and both hosts are up; node2's
    rule gone, the domain is active and node1 non operational again; node1's gone, node1
    is up again by itself."""
    site = storage_lab.first
    conn = site.connect()
    namespace = site.lab.topology.host("node1").namespace
    namespace2 = site.lab.topology.host("node2").namespace
    rule = ["OUTPUT", "-d", storage_lab.nfs_address, "-j", "REJECT"]
    hosts = conn.system_service().hosts_service()
    domain = conn.system_service().storage_domains_service().storage_domain_service(
        nfs_domain.id)
    host1, host2 = site.host_of(conn, "node1"), site.host_of(conn, "node2")
    try:
        _host_reaches(hosts, host1.id, types.HostStatus.UP)
        _iptables(namespace, "-I", *rule)
        cut = _host_reaches(hosts, host1.id, types.HostStatus.NON_OPERATIONAL)
        assert cut.status_detail == "storage_domain_unreachable"
        assert hosts.host_service(host2.id).get().status == types.HostStatus.UP
        events = [e.description for e in conn.system_service().events_service().list(max=50)]
        assert any(f"Host {host1.name} cannot access the Storage Domain(s) {nfs_domain.name}"
                   in e for e in events), events

        _iptables(namespace2, "-I", *rule)
        _domain_is(domain, types.StorageDomainStatus.INACTIVE)
        _host_reaches(hosts, host1.id, types.HostStatus.UP)  # the domain's fault, not theirs
        assert hosts.host_service(host2.id).get().status == types.HostStatus.UP
        events = [e.description for e in conn.system_service().events_service().list(max=50)]
        assert any(f"Storage Domain {nfs_domain.name} (Data Center Default) was deactivated "
                   "by system because it's not visible by any of the hosts" in e
                   for e in events), events
        _iptables(namespace2, "-D", *rule)
        _domain_is(domain, types.StorageDomainStatus.ACTIVE)
        _host_reaches(hosts, host1.id, types.HostStatus.NON_OPERATIONAL)

        _iptables(namespace, "-D", *rule)
        back = _host_reaches(hosts, host1.id, types.HostStatus.UP)
        assert not back.status_detail
        assert hosts.host_service(host2.id).get().status == types.HostStatus.UP
        sd = domain.get()
        assert sd.status == types.StorageDomainStatus.ACTIVE
        assert sd.available > 0 and sd.used > 0  # the export's space, as the probes saw it
    finally:
        _iptables(namespace2, "-D", *rule, check=False)
        _iptables(namespace, "-D", *rule, check=False)
        conn.close()


def _domain_is(service: Any, status: types.StorageDomainStatus) -> None:
    wait_until(lambda: service.get().status == status, 60, f"the domain to be {status.value}")


def _host_reaches(hosts: Any, host_id: str, status: types.HostStatus) -> types.Host:
    def reached() -> types.Host | None:
        host: types.Host = hosts.host_service(host_id).get()
        return host if host.status == status else None
    return wait_until(reached, 60, f"host {host_id} to be {status.value}")


def _iptables(namespace: str, *args: str, check: bool = True) -> None:
    done = subprocess.run(["ip", "netns", "exec", namespace, "iptables", *args],
                          capture_output=True, text=True, check=False)
    assert not check or done.returncode == 0, done.stderr


def _boot_disk(storage_lab: StorageLab, site: Site, domain_id: str, guest: GuestImage,
               name: str = "lab-nfs-boot") -> str:
    """A disk on the NFS domain holding the test guest (written into the volume from a
    node with qemu-img, as an upload would), ok in the engine."""
    conn = site.connect()
    try:
        size = _virtual_size(guest)
        disks = conn.system_service().disks_service()
        disk = disks.add(types.Disk(name=name, format=types.DiskFormat.COW,
                                    provisioned_size=size, sparse=True,
                                    storage_domains=[types.StorageDomain(id=domain_id)]))
        wait_until(lambda: disks.disk_service(disk.id).get().status == types.DiskStatus.OK,
                   120, "the disk to be created")
        image_dir = storage_lab.export_dir / domain_id / "images" / disk.id
        volumes = [p for p in image_dir.iterdir() if _is_uuid(p.name)]
        assert len(volumes) == 1
        meta = parse_metadata((image_dir / f"{volumes[0].name}.meta").read_text())
        assert meta["FORMAT"] == "COW" and meta["CAP"] == str(size)
        assert meta["IMAGE"] == disk.id and meta["DOMAIN"] == domain_id
        url = (f"nfs://{storage_lab.nfs_address}/export/{domain_id}/images/{disk.id}/"
               f"{volumes[0].name}")
        copied = subprocess.run(storage_lab.lab.exec_argv("node1", [
            "qemu-img", "convert", "-n", "-f", "qcow2", "-O", "qcow2",
            str(guest.qcow2_disk), url]), capture_output=True, text=True, check=False,
            timeout=300)
        assert copied.returncode == 0, copied.stderr
        return str(disk.id)
    finally:
        conn.close()


def _run_on(site: Site, vm_name: str, node: str, protocol: str = "nfs",
            while_up: Callable[[sdk.Connection, str], None] | None = None) -> None:
    """Start the VM pinned to `node`; it boots there from its shared disk (`while_up`
    is called with the VM's id once it has booted, before it is stopped)."""
    conn = site.connect()
    try:
        vms = conn.system_service().vms_service()
        vm = vms.list(search=f"name={vm_name}")[0]
        service = vms.vm_service(vm.id)
        host = site.host_of(conn, node)
        service.update(types.Vm(placement_policy=types.VmPlacementPolicy(
            hosts=[types.Host(id=host.id)])))
        log = CONSOLE_LOG_DIR / f"{vm.id}.log"
        log.unlink(missing_ok=True)
        service.start()
        running = wait_until(lambda: (v := service.get()).status == types.VmStatus.UP and v,
                             180, f"the VM to be up on {node}")
        assert running.host.id == host.id
        xml = _domain_xml(site.lab, node, vm.id)
        assert f"protocol='{protocol}'" in xml or f'protocol="{protocol}"' in xml
        wait_until(lambda: log.exists() and BOOT_MARKER in log.read_text(errors="replace"),
                   180, f"the guest to boot from its {protocol} disk on {node}")
        if while_up is not None:
            while_up(conn, vm.id)
        service.stop()
        wait_until(lambda: service.get().status == types.VmStatus.DOWN, 120, "the VM to stop")
    finally:
        conn.close()


def _new_vm(site: Site, name: str, disk_id: str,
            interface: types.DiskInterface = types.DiskInterface.VIRTIO) -> None:
    conn = site.connect()
    try:
        vms = conn.system_service().vms_service()
        vm = vms.add(types.Vm(name=name, cluster=types.Cluster(name="Default"),
                              template=types.Template(name="Blank"), memory=128 * MIB))
        vms.vm_service(vm.id).disk_attachments_service().add(types.DiskAttachment(
            disk=types.Disk(id=disk_id), interface=interface, bootable=True, active=True))
    finally:
        conn.close()


def test_a_vm_on_an_nfs_disk_runs_on_node1_then_on_node2(
        storage_lab: StorageLab, nfs_domain: NfsDomain, guest_image: GuestImage) -> None:
    disk_id = _boot_disk(storage_lab, storage_lab.first, nfs_domain.id, guest_image)
    _new_vm(storage_lab.first, "lab-nfs-vm", disk_id)
    _run_on(storage_lab.first, "lab-nfs-vm", "node1")
    _run_on(storage_lab.first, "lab-nfs-vm", "node2")
    checked = subprocess.run(storage_lab.lab.exec_argv("node2", [
        "qemu-img", "check", "-q", _volume_url(storage_lab, nfs_domain.id, disk_id)]),
        capture_output=True, text=True, check=False, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_raw_disk_removed_from_an_nfs_domain_leaves_nothing_on_storage(
        storage_lab: StorageLab, nfs_domain: NfsDomain) -> None:
    conn = storage_lab.first.connect()
    try:
        disks = conn.system_service().disks_service()
        disk = disks.add(types.Disk(name="lab-nfs-scratch", format=types.DiskFormat.RAW,
                                    provisioned_size=64 * MIB, sparse=True,
                                    storage_domains=[types.StorageDomain(id=nfs_domain.id)]))
        service = disks.disk_service(disk.id)
        wait_until(lambda: service.get().status == types.DiskStatus.OK, 120,
                   "the disk to be created")
        image_dir = storage_lab.export_dir / nfs_domain.id / "images" / disk.id
        volume = next(p for p in image_dir.iterdir() if _is_uuid(p.name))
        assert volume.stat().st_size == 64 * MIB
        assert parse_metadata((image_dir / f"{volume.name}.meta").read_text())["FORMAT"] == "RAW"
        service.remove()
        wait_until(lambda: not image_dir.exists(), 120, "the volume to be removed")
        with pytest.raises(sdk.NotFoundError):
            service.get()
    finally:
        conn.close()


def test_an_iscsi_domain_holds_a_disk_that_boots_a_vm_on_either_node(
        storage_lab: StorageLab, guest_image: GuestImage) -> None:
    site, lab = storage_lab.first, storage_lab.lab
    target = lab.topology.iscsi_target()
    portal = storage_lab.nfs_address  # the storage host serves both on its storage address

    def lun(number: str) -> types.HostStorage:
        return types.HostStorage(type=types.StorageType.ISCSI, logical_units=[
            types.LogicalUnit(id=number, address=portal, port=3260, target=target)])

    conn = site.connect()
    try:
        host1 = site.host_of(conn, "node1")
        sds = conn.system_service().storage_domains_service()
        added = sds.add(types.StorageDomain(name="lab-iscsi", type=types.StorageDomainType.DATA,
                                            host=types.Host(id=host1.id), storage=lun("1")))
        sd = sds.storage_domain_service(added.id)
        wait_until(lambda: sd.get().status == types.StorageDomainStatus.UNATTACHED, 120,
                   "the iSCSI domain to be written")
        with pytest.raises(sdk.Error) as error:
            sds.add(types.StorageDomain(name="lab-iscsi-again", type=types.StorageDomainType.DATA,
                                        host=types.Host(id=host1.id), storage=lun("1")))
        assert error.value.code == 409 and "already used by storage domain lab-iscsi" in str(
            error.value)
        dc = conn.system_service().data_centers_service().list(search="name=Default")[0]
        attached = conn.system_service().data_centers_service().data_center_service(
            dc.id).storage_domains_service()
        attached.add(types.StorageDomain(id=added.id))
        wait_until(lambda: attached.storage_domain_service(added.id).get().status
                   == types.StorageDomainStatus.ACTIVE, 120, "the iSCSI domain to be active")
        disks = conn.system_service().disks_service()
        with pytest.raises(sdk.Error) as too_big:
            disks.add(types.Disk(name="lab-iscsi-huge", format=types.DiskFormat.RAW,
                                 provisioned_size=3 * 2**30,
                                 storage_domains=[types.StorageDomain(id=added.id)]))
        assert too_big.value.code == 409 and "no free extent" in str(too_big.value)
        scratch = disks.add(types.Disk(name="lab-iscsi-scratch", format=types.DiskFormat.RAW,
                                       provisioned_size=64 * MIB,
                                       storage_domains=[types.StorageDomain(id=added.id)]))
        wait_until(lambda: disks.disk_service(scratch.id).get().status == types.DiskStatus.OK,
                   120, "the scratch disk to be created")
        free = sd.get().available
        disks.disk_service(scratch.id).remove()
        wait_until(lambda: sd.get().available == free + 64 * MIB, 120,
                   "the scratch disk's extent to be free again")
        size = _virtual_size(guest_image)
        disk = disks.add(types.Disk(name="lab-iscsi-boot", format=types.DiskFormat.COW,
                                    provisioned_size=size,
                                    storage_domains=[types.StorageDomain(id=added.id)]))
        wait_until(lambda: disks.disk_service(disk.id).get().status == types.DiskStatus.OK,
                   120, "the iSCSI disk to be created")
    finally:
        conn.close()
    backing = lab.topology.host_dir(lab.topology.storage) / "lun1.img"
    with backing.open("rb") as f:
        metadata = parse_metadata(f.read(MIB).split(b"\0", 1)[0].decode())
    assert metadata["SDUUID"] == added.id and metadata["TYPE"] == "ISCSI"
    assert metadata["POOL_UUID"] == dc.id
    (record,) = [v for k, v in metadata.items() if k.startswith("VOL_")]
    image, offset, length, fmt, cap = record.split(",")[:5]
    assert (image, fmt, cap) == (disk.id, "COW", str(size))
    extent = (f"driver=qcow2,file.driver=raw,file.offset={offset},file.size={length},"
              f"file.file.driver=iscsi,file.file.transport=tcp,file.file.portal={portal}:3260,"
              f"file.file.target={target},file.file.lun=1")
    copied = subprocess.run(lab.exec_argv("node1", [
        "qemu-img", "convert", "-n", "-f", "qcow2", str(guest_image.qcow2_disk),
        "--target-image-opts", extent]), capture_output=True, text=True, check=False,
        timeout=300)
    assert copied.returncode == 0, copied.stderr
    _new_vm(site, "lab-iscsi-vm", disk.id)
    _run_on(site, "lab-iscsi-vm", "node1", "iscsi")
    _run_on(site, "lab-iscsi-vm", "node2", "iscsi")
    checked = subprocess.run(lab.exec_argv("node2", [
        "qemu-img", "check", "-q", "--image-opts", extent]), capture_output=True, text=True,
        check=False, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _nfs_volumes(storage_lab: StorageLab, domain_id: str, disk_id: str
                 ) -> dict[str, dict[str, str]]:
    """The volumes of a disk's image on the export, with their `.meta`."""
    image_dir = storage_lab.export_dir / domain_id / "images" / disk_id
    return {p.name: parse_metadata((image_dir / f"{p.name}.meta").read_text())
            for p in image_dir.iterdir() if _is_uuid(p.name)}


def _leaf_url(storage_lab: StorageLab, domain_id: str, disk_id: str) -> str:
    [leaf] = [v for v, meta in _nfs_volumes(storage_lab, domain_id, disk_id).items()
              if meta["VOLTYPE"] == "LEAF"]
    return f"nfs://{storage_lab.nfs_address}/export/{domain_id}/images/{disk_id}/{leaf}"


def _qemu_io(storage_lab: StorageLab, url: str, command: str) -> str:
    """qemu-io on node1 over QEMU's NFS client; its output (fails on an error)."""
    done = subprocess.run(storage_lab.lab.exec_argv("node1", [
        "qemu-io", "-f", "qcow2", "-c", command, url]), capture_output=True, text=True,
        check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _mbr(storage_lab: StorageLab, url: str) -> list[str]:
    """The disk's first sector as qemu-io dumps it (the guest's boot code)."""
    dump = _qemu_io(storage_lab, url, "read -v 0 512").splitlines()
    return [line for line in dump if line.startswith("000")]


def _holds_marker(storage_lab: StorageLab, url: str) -> bool:
    """Whether the volume (with its chain) reads as the marker at 512 KiB."""
    done = subprocess.run(storage_lab.lab.exec_argv("node1", [
        "qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0x5a 512k 64k", url]),
        capture_output=True, text=True, check=False, timeout=120)
    assert "read 65536/65536 bytes" in done.stdout, done.stdout + done.stderr
    return done.returncode == 0 and "Pattern verification failed" not in done.stdout


def test_snapshots_of_a_vm_on_nfs_are_restored_and_merged_through_the_sdk(
        storage_lab: StorageLab, nfs_domain: NfsDomain) -> None:
    """The VM of the NFS test (down, its disk on the domain): a snapshot, a marker written
    over it, a restore that drops the marker; the VM boots from its two-volume chain, takes
    a live snapshot, and both snapshots are merged away live; the marker written again
    survives, leaving one clean volume."""
    site = storage_lab.first
    # The marker goes to 512 KiB, between the MBR and the guest's partition.
    conn = site.connect()
    try:
        vms = conn.system_service().vms_service()
        [vm] = vms.list(search="name=lab-nfs-vm")
        [attachment] = vms.vm_service(vm.id).disk_attachments_service().list()
        disk_id = attachment.disk.id
        before = _nfs_volumes(storage_lab, nfs_domain.id, disk_id)
        assert len(before) == 1
        snaps = vms.vm_service(vm.id).snapshots_service()
        taken = snaps.add(types.Snapshot(description="before marker",
                                         persist_memorystate=False))
        snap = snaps.snapshot_service(taken.id)
        wait_until(lambda: snap.get().snapshot_status == types.SnapshotStatus.OK, 120,
                   "the snapshot to be taken")
        volumes = _nfs_volumes(storage_lab, nfs_domain.id, disk_id)
        assert len(volumes) == 2 and volumes[next(iter(before))]["VOLTYPE"] == "INTERNAL"
        original = _mbr(storage_lab, _leaf_url(storage_lab, nfs_domain.id, disk_id))
        assert len(original) == 32  # 512 bytes, 16 a line
        _qemu_io(storage_lab, _leaf_url(storage_lab, nfs_domain.id, disk_id),
                 "write -P 0x5a 512k 64k")
        assert _holds_marker(storage_lab, _leaf_url(storage_lab, nfs_domain.id, disk_id))

        with pytest.raises(sdk.Error) as unknown:
            snaps.snapshot_service(str(uuid.uuid4())).restore()
        assert unknown.value.code == 404
        snap.restore()
        wait_until(lambda: snap.get().snapshot_status == types.SnapshotStatus.OK
                   and len(_nfs_volumes(storage_lab, nfs_domain.id, disk_id)) == 2, 120,
                   "the snapshot to be restored")
        assert not _holds_marker(storage_lab,
                                 _leaf_url(storage_lab, nfs_domain.id, disk_id))
    finally:
        conn.close()

    def snapshots_live(conn: sdk.Connection, vm_id: str) -> None:
        live_snapshots_taken_and_merged(storage_lab, nfs_domain.id, conn, vm_id, disk_id,
                                        older=taken.id)
    # The marker written again (the VM down) must survive the live merges.
    _qemu_io(storage_lab, _leaf_url(storage_lab, nfs_domain.id, disk_id),
             "write -P 0x5a 512k 64k")
    _run_on(site, "lab-nfs-vm", "node1", while_up=snapshots_live)

    volumes = _nfs_volumes(storage_lab, nfs_domain.id, disk_id)
    assert list(volumes) == list(before)
    [meta] = volumes.values()
    assert (meta["VOLTYPE"], meta["PUUID"]) == ("LEAF", "00000000-0000-0000-0000-000000000000")
    url = _leaf_url(storage_lab, nfs_domain.id, disk_id)
    assert _holds_marker(storage_lab, url)
    assert _mbr(storage_lab, url) == original
    checked = subprocess.run(storage_lab.lab.exec_argv("node1", ["qemu-img", "check", "-q",
                                                                  url]),
                             capture_output=True, text=True, check=False, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _counts(log: Path) -> list[int]:
    """The test guest's counter lines on its serial console, in order (a line cut short
    at the end of the file is left out)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return [int(m.group(1)) for m in re.finditer(
        re.escape(COUNTER_PREFIX) + r"(\d+)\r?\n", text)]


def test_a_snapshot_with_memory_resumes_the_guest_on_the_other_node_through_the_sdk(
        storage_lab: StorageLab, nfs_domain: NfsDomain, guest_image: GuestImage) -> None:
    """The test guest runs on node1 from an NFS disk, its counter (a shell loop, a line
    every 100 ms on its serial console) well on; a snapshot with memory stores its state
    on the domain (a memory dump and a metadata volume, with their `.meta`) and the step
    shows the pause; the guest counts on, and is powered off. Restored with memory and
    started on node2, the guest does not boot: its counter goes on from the snapshot's
    count (its uptime is the snapshot's, longer than the time since the start). Removing
    the snapshot removes its memory volumes."""
    site = storage_lab.first
    disk_id = _boot_disk(storage_lab, site, nfs_domain.id, guest_image)
    _new_vm(site, "lab-memsnap-vm", disk_id)
    conn = site.connect()
    try:
        system = conn.system_service()
        vms = system.vms_service()
        [vm] = vms.list(search="name=lab-memsnap-vm")
        service = vms.vm_service(vm.id)
        service.update(types.Vm(placement_policy=types.VmPlacementPolicy(
            hosts=[types.Host(id=site.host_of(conn, "node1").id)])))
        log = CONSOLE_LOG_DIR / f"{vm.id}.log"
        log.unlink(missing_ok=True)
        service.start()
        wait_until(lambda: service.get().status == types.VmStatus.UP, 180, "the VM to be up")
        wait_until(lambda: len(_counts(log)) > 100, 180, "the guest to count for a while")

        snaps = service.snapshots_service()
        before = _counts(log)[-1]
        taken = snaps.add(types.Snapshot(description="with memory", persist_memorystate=True))
        snap = snaps.snapshot_service(taken.id)
        wait_until(lambda: snap.get().snapshot_status == types.SnapshotStatus.OK, 300,
                   "the snapshot with memory to be taken")
        after = _counts(log)[-1]
        assert snap.get().persist_memorystate is True
        memory = {meta["DISKTYPE"]: meta for path in (storage_lab.export_dir / nfs_domain.id
                                                      / "images").iterdir()
                  for meta in _nfs_volumes(storage_lab, nfs_domain.id, path.name).values()
                  if meta.get("DISKTYPE") in ("MEMD", "MEMM")}
        assert set(memory) == {"MEMD", "MEMM"} and memory["MEMD"]["FORMAT"] == "RAW"
        assert int(memory["MEMD"]["CAP"]) > 16 * MIB  # the guest's RAM, not nothing
        # Storage names and sizes each memory volume as the API shows its disk, so an
        # import shows the same disk: alias, description, size (the volume grown to it).
        kinds = {types.DiskContentType.MEMORY_DUMP_VOLUME: "MEMD",
                 types.DiskContentType.MEMORY_METADATA_VOLUME: "MEMM"}
        shown = {kinds[d.content_type]: d for d in system.disks_service().list()
                 if d.content_type in kinds}
        assert {kind: (json.loads(meta["DESCRIPTION"]), int(meta["CAP"]))
                for kind, meta in memory.items()} == {
            kind: ({"DiskAlias": d.alias, "DiskDescription": d.description},
                   d.provisioned_size) for kind, d in shown.items()}
        assert shown["MEMD"].alias == "lab-memsnap-vm_with memory_Memory dump"
        for kind, d in shown.items():
            volume = next((storage_lab.export_dir / nfs_domain.id / "images" / d.id).glob(
                f"{d.image_id}"))
            assert volume.stat().st_size == d.provisioned_size, kind
        jobs = system.jobs_service()
        [job] = [j for j in jobs.list() if j.description.startswith(
            "Creating VM Snapshot with memory for VM lab-memsnap-vm")]
        steps = [s.description for s in jobs.job_service(job.id).steps_service().list()]
        paused = [float(m.group(1) or 0) for s in steps  # "under 2 ms": too short to see
                  if (m := re.search(r"guest paused (?:(\d+) ms|under 2 ms)", s))]
        assert len(paused) == 1 and 0 <= paused[0] < 5000, steps
        print(f"memory snapshot: {steps}")

        wait_until(lambda: _counts(log)[-1] > after + 50, 60, "the guest to count on")
        counted = _counts(log)[-1]
        service.stop()
        wait_until(lambda: service.get().status == types.VmStatus.DOWN, 120, "the VM to stop")

        snap.restore(restore_memory=True)
        wait_until(lambda: snap.get().snapshot_status == types.SnapshotStatus.OK
                   and service.get().status == types.VmStatus.DOWN, 120,
                   "the snapshot to be restored")
        service.update(types.Vm(placement_policy=types.VmPlacementPolicy(
            hosts=[types.Host(id=site.host_of(conn, "node2").id)])))
        log.unlink(missing_ok=True)
        started = time.monotonic()
        service.start()
        wait_until(lambda: service.get().status == types.VmStatus.UP, 180,
                   "the VM to be up on node2")
        assert service.get().host.id == site.host_of(conn, "node2").id
        wait_until(lambda: len(_counts(log)) > 20, 60, "the resumed guest to count")
        since_start = time.monotonic() - started
        resumed = _counts(log)
        text = log.read_text(errors="replace")
        # Not a boot: no boot marker, and the counter goes on from the snapshot's count.
        assert BOOT_MARKER not in text, text[:2000]
        assert before <= resumed[0] <= after + 1, (before, after, resumed[:5])
        assert resumed[0] < counted
        assert resumed == list(range(resumed[0], resumed[0] + len(resumed)))
        # Its uptime (a count every 100 ms since it booted) is the snapshot's, which is
        # longer than the time since this start.
        assert resumed[0] / 10 > since_start, (resumed[0], since_start)
        print(f"counts: before {before}, after {after}, at power-off {counted}, resumed at "
              f"{resumed[0]}; {since_start:.1f} s since the start on node2")

        service.stop()
        wait_until(lambda: service.get().status == types.VmStatus.DOWN, 120, "the VM to stop")
        snap.remove()
        wait_until(lambda: all(s.id != taken.id for s in snaps.list()), 300,
                   "the snapshot to be removed")
        left = [meta for path in (storage_lab.export_dir / nfs_domain.id / "images").iterdir()
                for meta in _nfs_volumes(storage_lab, nfs_domain.id, path.name).values()
                if meta.get("DISKTYPE") in ("MEMD", "MEMM")]
        assert left == []
        service.remove()
        wait_until(lambda: not vms.list(search="name=lab-memsnap-vm"), 120, "the VM to go")
    finally:
        conn.close()


def live_snapshots_taken_and_merged(storage_lab: StorageLab, domain_id: str,
                                    conn: sdk.Connection, vm_id: str, disk_id: str, *,
                                    older: str) -> None:
    """The running VM (a snapshot `older` under its active volume, which holds the
    marker): a live snapshot, then `older` merged live (a block commit of the volume
    between, the marker's) and the live one (an active commit, then the pivot): the VM
    runs on, its QEMU writes the one volume left, whose `.meta` says it is the leaf."""
    vm_service = conn.system_service().vms_service().vm_service(vm_id)
    snaps = vm_service.snapshots_service()
    live = snaps.add(types.Snapshot(description="live", persist_memorystate=False))
    wait_until(lambda: snaps.snapshot_service(live.id).get().snapshot_status
               == types.SnapshotStatus.OK, 120, "the live snapshot to be taken")
    volumes = _nfs_volumes(storage_lab, domain_id, disk_id)
    assert sorted(m["VOLTYPE"] for m in volumes.values()) == ["INTERNAL", "INTERNAL", "LEAF"]
    [leaf] = [v for v, m in volumes.items() if m["VOLTYPE"] == "LEAF"]
    assert f"/images/{disk_id}/{leaf}'" in _domain_xml(storage_lab.lab, "node1", vm_id)
    with pytest.raises(sdk.Error) as refused:  # oVirt restores a VM that is down
        snaps.snapshot_service(older).restore()
    assert refused.value.code == 409 and "shut it down first" in str(refused.value)

    [base] = [v for v, m in volumes.items() if m["PUUID"] == TOP_OF_CHAIN]
    for snapshot_id in (older, live.id):
        snaps.snapshot_service(snapshot_id).remove()
        wait_until(lambda sid=snapshot_id: all(s.id != sid for s in snaps.list()), 300,
                   "the snapshot to be merged away live")
        assert vm_service.get().status == types.VmStatus.UP
        if snapshot_id == older:  # the inner volume is gone: the leaf's backing is the base
            volumes = _nfs_volumes(storage_lab, domain_id, disk_id)
            assert (volumes[leaf]["PUUID"], volumes[base]["VOLTYPE"]) == (base, "INTERNAL")
            assert _chain_on_storage(storage_lab, domain_id, disk_id, leaf) == [leaf, base]
    [(volume, meta)] = _nfs_volumes(storage_lab, domain_id, disk_id).items()
    assert meta["VOLTYPE"] == "LEAF"
    assert f"/images/{disk_id}/{volume}'" in _domain_xml(storage_lab.lab, "node1", vm_id)


def _chain_on_storage(storage_lab: StorageLab, domain_id: str, disk_id: str, volume: str
                      ) -> list[str]:
    """The volumes qemu-img reads through from `volume` (itself first), by their ids."""
    url = f"nfs://{storage_lab.nfs_address}/export/{domain_id}/images/{disk_id}/{volume}"
    done = subprocess.run(storage_lab.lab.exec_argv("node1", [
        "qemu-img", "info", "-U", "--backing-chain", "--output=json", url]),
        capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    found = [re.search(rf"/images/{disk_id}/([0-9a-f-]{{36}})", layer["filename"])
             for layer in json.loads(done.stdout)]
    assert all(found), done.stdout
    return [m.group(1) for m in found if m]


def test_a_template_on_iscsi_gives_a_thin_vm_that_boots(storage_lab: StorageLab) -> None:
    """The VM of the iSCSI test (down, its disk an extent): a template made from it on the
    same domain (a full copy into a new extent), and a thin VM whose disk is a qcow2
    extent over the template's, which boots on node1."""
    site = storage_lab.first
    conn = site.connect()
    try:
        vms = conn.system_service().vms_service()
        [vm] = vms.list(search="name=lab-iscsi-vm")
        [attachment] = vms.vm_service(vm.id).disk_attachments_service().list()
        domain_id = conn.system_service().disks_service().disk_service(
            attachment.disk.id).get().storage_domains[0].id
        templates_service = conn.system_service().templates_service()
        made = templates_service.add(types.Template(name="lab-iscsi-tpl", vm=types.Vm(id=vm.id)))
        template = templates_service.template_service(made.id)
        wait_until(lambda: template.get().status == types.TemplateStatus.OK, 300,
                   "the template to be copied")
        [template_attachment] = template.disk_attachments_service().list()
        template_disk = conn.system_service().disks_service().disk_service(
            template_attachment.disk.id).get()
        assert template_disk.storage_domains[0].id == domain_id
        thin = vms.add(types.Vm(name="lab-iscsi-thin", cluster=types.Cluster(name="Default"),
                                template=types.Template(id=made.id), memory=128 * MIB))
        [thin_attachment] = vms.vm_service(thin.id).disk_attachments_service().list()
        disks = conn.system_service().disks_service()
        wait_until(lambda: disks.disk_service(thin_attachment.disk.id).get().status
                   == types.DiskStatus.OK, 120, "the thin disk to be made")
    finally:
        conn.close()

    def backed_by_the_template(conn: sdk.Connection, vm_id: str) -> None:
        xml = _domain_xml(storage_lab.lab, "node1", vm_id)
        assert xml.count("protocol='iscsi'") + xml.count('protocol="iscsi"') == 2
        assert "<backingStore type='network'" in xml or '<backingStore type="network"' in xml
    _run_on(site, "lab-iscsi-thin", "node1", "iscsi", while_up=backed_by_the_template)


def test_a_snapshot_of_an_iscsi_disk_is_restored_and_merged_through_the_sdk(
        storage_lab: StorageLab) -> None:
    """The iSCSI VM's disk (down): a snapshot gives it a new extent over its own; a marker
    written over it is gone after a restore; the snapshot merged away frees its extents.
    Each time the chain QEMU reads on the LUN (`qemu-img info --backing-chain` through
    its iSCSI client) is the one the domain's metadata area lists from the database,
    ending at the volume the API names as the disk's image."""
    site = storage_lab.first
    conn = site.connect()
    try:
        vms = conn.system_service().vms_service()
        [vm] = vms.list(search="name=lab-iscsi-vm")
        [attachment] = vms.vm_service(vm.id).disk_attachments_service().list()
        disks = conn.system_service().disks_service()
        disk = disks.disk_service(attachment.disk.id)
        domain_id = disk.get().storage_domains[0].id
        sd = conn.system_service().storage_domains_service().storage_domain_service(domain_id)
        free = sd.get().available
        [base] = _iscsi_chain(storage_lab, disk.get().image_id)
        snaps = vms.vm_service(vm.id).snapshots_service()
        taken = snaps.add(types.Snapshot(description="iscsi before marker",
                                         persist_memorystate=False))
        snap = snaps.snapshot_service(taken.id)
        wait_until(lambda: snap.get().snapshot_status == types.SnapshotStatus.OK, 120,
                   "the snapshot to be taken")
        chain = _iscsi_chain(storage_lab, disk.get().image_id)
        assert len(chain) == 2 and chain[0] == base
        assert sd.get().available == free - chain[1][2]
        _iscsi_io(storage_lab, chain[1], "write -P 0x5a 512k 64k")
        assert _iscsi_io(storage_lab, chain[1], "read -P 0x5a 512k 64k", check=False)

        with pytest.raises(sdk.Error) as unknown:
            snaps.snapshot_service(str(uuid.uuid4())).restore()
        assert unknown.value.code == 404
        snap.restore()
        wait_until(lambda: snap.get().snapshot_status == types.SnapshotStatus.OK
                   and disk.get().image_id != chain[1][0], 120, "the snapshot to be restored")
        restored = _iscsi_chain(storage_lab, disk.get().image_id)
        assert len(restored) == 2 and restored[0] == base
        assert not _iscsi_io(storage_lab, restored[1], "read -P 0x5a 512k 64k", check=False)

        snap.remove()
        wait_until(lambda: all(s.id != taken.id for s in snaps.list()), 120,
                   "the snapshot to be merged away")
        assert _iscsi_chain(storage_lab, disk.get().image_id) == [base]
        assert sd.get().available == free
    finally:
        conn.close()
    checked = subprocess.run(storage_lab.lab.exec_argv("node1", [
        "qemu-img", "check", "-q", "--image-opts", _extent_opts(storage_lab, base)]),
        capture_output=True, text=True, check=False, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _lab_iscsi_domain(site: Site) -> str:
    """The id of the iSCSI domain on LUN 1 (`lab-iscsi`), added and attached here when the
    test that makes it did not run."""
    conn = site.connect()
    try:
        sds = conn.system_service().storage_domains_service()
        found = sds.list(search="name=lab-iscsi")
        if found:
            return str(found[0].id)
        added = sds.add(types.StorageDomain(
            name="lab-iscsi", type=types.StorageDomainType.DATA,
            host=types.Host(id=site.host_of(conn, "node1").id),
            storage=types.HostStorage(type=types.StorageType.ISCSI, logical_units=[
                types.LogicalUnit(id="1", address=str(site.lab.topology.host("storage").address(
                    Net.STORAGE)), port=3260, target=site.lab.topology.iscsi_target())])))
        sd = sds.storage_domain_service(added.id)
        wait_until(lambda: sd.get().status == types.StorageDomainStatus.UNATTACHED, 120,
                   "the iSCSI domain to be written")
        dc = conn.system_service().data_centers_service().list(search="name=Default")[0]
        attached = conn.system_service().data_centers_service().data_center_service(
            dc.id).storage_domains_service()
        attached.add(types.StorageDomain(id=added.id))
        wait_until(lambda: attached.storage_domain_service(added.id).get().status
                   == types.StorageDomainStatus.ACTIVE, 120, "the iSCSI domain to be active")
        return str(added.id)
    finally:
        conn.close()


def _backing_name(storage_lab: StorageLab, volume: tuple[str, int, int]) -> str:
    """The backing name in the header of a qcow2 volume of the lab's LUN 1."""
    done = subprocess.run(storage_lab.lab.exec_argv("node1", [
        "qemu-img", "info", "-U", "--output=json", "--image-opts",
        _extent_opts(storage_lab, volume)]), capture_output=True, text=True, check=False,
        timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return str(json.loads(done.stdout)["backing-filename"])


def _guest_io(lab: Lab, vm_id: str, disk_id: str, command: str) -> None:
    """A qemu-io command run by the VM's own QEMU on its disk (HMP `qemu-io`), as the guest
    would write it: through the chain QEMU has open now. QEMU prints qemu-io's report to
    its own log; the monitor answers only an error."""
    said = _guest_io_says(lab, vm_id, disk_id, command)
    assert not said.strip(), said


def _guest_io_says(lab: Lab, vm_id: str, disk_id: str, command: str) -> str:
    """What HMP answers a qemu-io command run by the VM's QEMU on its disk: qemu-io's errors,
    and whatever QEMU's block drivers reported meanwhile (e.g. its iSCSI client's
    reconnections)."""
    conn = libvirt.open(lab.hypervisor("node1").uri)
    try:
        dom = conn.lookupByUUIDString(vm_id)
        return str(libvirt_qemu.qemuMonitorCommand(
            dom, f'qemu-io -d ua-{disk_id} "{command}"',
            libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP))
    finally:
        conn.close()


# What QEMU's iSCSI client says while it reconnects and its first command after a
# reconnection is answered "unit attention" (it retries that command): not qemu-io's errors.
_ISCSI_RECONNECTING = re.compile(r"^iSCSI(: NOP timeout| CheckCondition: SENSE KEY:"
                                 r"UNIT_ATTENTION|: reconnect)")


def _written_through_outage(lab: Lab, vm_id: str, disk_id: str, command: str) -> list[str]:
    """qemu-io's own errors for `command`, the iSCSI client's reconnection notes left out."""
    said = _guest_io_says(lab, vm_id, disk_id, command)
    return [line for line in said.splitlines()
            if line.strip() and not _ISCSI_RECONNECTING.match(line.strip())]


def test_a_running_vms_disks_on_nfs_and_iscsi_are_snapshotted_and_merged_live(
        storage_lab: StorageLab, nfs_domain: NfsDomain) -> None:
    """A running VM with a disk on NFS and one on iSCSI: a live snapshot gives each a new
    volume its QEMU writes (a new NFS volume, a new slice of the LUN), data written then
    lands over the snapshot; a second one over it; the first merged away live (a block
    commit of the volume between, whose name QEMU writes into the header over it) and
    the second (an active commit and its pivot) leave each disk its base, holding the
    data, the VM up throughout; each time the chain on storage (qcow2 headers, the
    `.meta` files, the LUN's metadata area) is the engine's."""
    site, lab = storage_lab.first, storage_lab.lab
    iscsi_id = _lab_iscsi_domain(site)
    conn = site.connect()
    try:
        system = conn.system_service()
        disks = system.disks_service()
        made = _disks_on_both(conn, "lab-live", nfs_domain.id, iscsi_id)
        nfs_disk, iscsi_disk = (disks.disk_service(d.id) for d in made)
        sd = system.storage_domains_service().storage_domain_service(iscsi_id)
        free = sd.get().available
        [iscsi_base] = _iscsi_chain(storage_lab, iscsi_disk.get().image_id)
        [nfs_base] = _nfs_volumes(storage_lab, nfs_domain.id, made[0].id)
        vm, vm_service = _running_on_node1(site, conn, "lab-live-vm", made)

        snaps = vm_service.snapshots_service()
        live = snaps.add(types.Snapshot(description="live on nfs and iscsi",
                                        persist_memorystate=False))
        wait_until(lambda: snaps.snapshot_service(live.id).get().snapshot_status
                   == types.SnapshotStatus.OK, 120, "the live snapshot to be taken")
        chain = _iscsi_chain(storage_lab, iscsi_disk.get().image_id)
        assert len(chain) == 2 and chain[0] == iscsi_base
        assert sd.get().available == free - chain[1][2]
        volumes = _nfs_volumes(storage_lab, nfs_domain.id, made[0].id)
        [nfs_top] = [v for v, m in volumes.items() if m["VOLTYPE"] == "LEAF"]
        assert volumes[nfs_base]["VOLTYPE"] == "INTERNAL"
        assert volumes[nfs_top]["PUUID"] == nfs_base
        xml = _domain_xml(lab, "node1", vm.id)
        assert f"/images/{made[0].id}/{nfs_top}'" in xml
        assert f"offset='{chain[1][1]}'" in xml and f"offset='{iscsi_base[1]}'" in xml
        for disk in made:  # written over the snapshot, into the volumes QEMU writes now
            _guest_io(lab, vm.id, disk.id, "write -P 0x5a 512k 64k")
        second = snaps.add(types.Snapshot(description="second live",
                                          persist_memorystate=False))
        wait_until(lambda: snaps.snapshot_service(second.id).get().snapshot_status
                   == types.SnapshotStatus.OK, 120, "the second live snapshot to be taken")
        chain = _iscsi_chain(storage_lab, iscsi_disk.get().image_id)
        assert len(chain) == 3 and sd.get().available == free - chain[1][2] - chain[2][2]
        for disk in made:
            _guest_io(lab, vm.id, disk.id, "write -P 0x6b 640k 64k")

        for snapshot in (live, second):
            snaps.snapshot_service(snapshot.id).remove()
            wait_until(lambda sid=snapshot.id: all(s.id != sid for s in snaps.list()), 300,
                       "the snapshot to be merged away live")
            assert vm_service.get().status == types.VmStatus.UP
            if snapshot is live:  # QEMU named the base in the top's header, as libvirt says
                assert _iscsi_chain(storage_lab, iscsi_disk.get().image_id) == [
                    iscsi_base, chain[2]]
                assert sd.get().available == free - chain[2][2]
                named = _backing_name(storage_lab, chain[2])
                assert iscsi_domain._slice(json.loads(named.removeprefix("json:"))) == (
                    lab.topology.iscsi_target(), 1, iscsi_base[1], iscsi_base[2]), named
                volumes = _nfs_volumes(storage_lab, nfs_domain.id, made[0].id)
                assert len(volumes) == 2 and volumes[nfs_base]["VOLTYPE"] == "INTERNAL"
                [nfs_top] = [v for v, m in volumes.items() if m["VOLTYPE"] == "LEAF"]
                assert volumes[nfs_top]["PUUID"] == nfs_base
        assert _iscsi_chain(storage_lab, iscsi_disk.get().image_id) == [iscsi_base]
        assert sd.get().available == free
        [(volume, meta)] = _nfs_volumes(storage_lab, nfs_domain.id, made[0].id).items()
        assert (volume, meta["VOLTYPE"], meta["PUUID"]) == (nfs_base, "LEAF", TOP_OF_CHAIN)
        assert nfs_disk.get().image_id == nfs_base
        xml = _domain_xml(lab, "node1", vm.id)
        assert f"/images/{made[0].id}/{nfs_base}'" in xml and f"/{nfs_top}'" not in xml
        assert f"offset='{chain[1][1]}'" not in xml and f"offset='{chain[2][1]}'" not in xml
        vm_service.stop()
        wait_until(lambda: vm_service.get().status == types.VmStatus.DOWN, 120,
                   "the VM to stop")
    finally:
        conn.close()
    nfs_url = _leaf_url(storage_lab, nfs_domain.id, made[0].id)
    assert _holds_marker(storage_lab, nfs_url)
    assert "Pattern verification failed" not in _qemu_io(storage_lab, nfs_url,
                                                          "read -P 0x6b 640k 64k")
    for pattern in ("0x5a 512k", "0x6b 640k"):
        assert _iscsi_io(storage_lab, iscsi_base, f"read -P {pattern} 64k", check=False)
    for image in (["-f", "qcow2", nfs_url],
                  ["--image-opts", _extent_opts(storage_lab, iscsi_base)]):
        checked = subprocess.run(lab.exec_argv("node1", ["qemu-img", "check", "-q", *image]),
                                 capture_output=True, text=True, check=False, timeout=120)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    conn = site.connect()
    try:  # later tests find the domains as they were
        vms = conn.system_service().vms_service()
        vms.vm_service(vm.id).remove()
        wait_until(lambda: not vms.list(search="name=lab-live-vm"), 120, "the VM to go")
        wait_until(lambda: not conn.system_service().disks_service().list(
            search="name=lab-live-*"), 120, "its disks to go")
    finally:
        conn.close()



def test_the_storage_host_unreachable_for_30_s_flags_its_domains_and_loses_no_data(
        storage_lab: StorageLab, nfs_domain: NfsDomain) -> None:
    """The storage host drops everything sent to it (NFS and iSCSI alike) for at least
    30 s, while a VM with a disk on each domain runs on node1 and a write of its is on the
    way: both domains are made inactive with the system's event and no host is blamed
    (the storage's fault, not theirs); the VM stays up. The address back, the domains are
    active again, the write held through the outage has landed, and what was written
    before and after is on each volume, which `qemu-img check` finds clean."""
    site, lab = storage_lab.first, storage_lab.lab
    iscsi_id = _lab_iscsi_domain(site)
    storage_ns = lab.topology.host("storage").namespace
    rule = ["INPUT", "!", "-i", "lo", "-j", "DROP"]
    conn = site.connect()
    try:
        system = conn.system_service()
        disks = system.disks_service()
        made = _disks_on_both(conn, "lab-outage", nfs_domain.id, iscsi_id)
        [iscsi_volume] = _iscsi_chain(storage_lab, disks.disk_service(made[1].id).get().image_id)
        vms = system.vms_service()
        vm, vm_service = _running_on_node1(site, conn, "lab-outage-vm", made)
        xml = _domain_xml(lab, "node1", vm.id)
        assert xml.count("error_policy='stop'") == 2, xml  # an error pauses, never reaches the guest
        for disk in made:
            _guest_io(lab, vm.id, disk.id, "write -P 0x3c 0 64k")

        hosts = system.hosts_service()
        domains = system.storage_domains_service()
        cut_at = time.monotonic()
        _iptables(storage_ns, "-I", *rule)
        try:
            held_errors: list[list[str]] = []
            held = threading.Thread(target=lambda: held_errors.append(_written_through_outage(
                lab, vm.id, made[0].id, "write -P 0x4d 128k 64k")), daemon=True)
            held.start()  # the guest's write, on its way when the storage went away
            for sd_id in (nfs_domain.id, iscsi_id):
                _domain_is(domains.storage_domain_service(sd_id),
                           types.StorageDomainStatus.INACTIVE)
            for node in ("node1", "node2"):
                host = hosts.host_service(site.host_of(conn, node).id).get()
                assert host.status == types.HostStatus.UP, (node, host.status_detail)
            events = [e.description for e in system.events_service().list(max=100)]
            for name in (nfs_domain.name, "lab-iscsi"):
                assert any(f"Storage Domain {name} (Data Center Default) was deactivated by "
                           "system because it's not visible by any of the hosts" in e
                           for e in events), events
            time.sleep(max(0.0, 30 - (time.monotonic() - cut_at)))
            assert held.is_alive()  # nothing answered it: the write waits, it did not fail
        finally:
            _iptables(storage_ns, "-D", *rule, check=False)
        for sd_id in (nfs_domain.id, iscsi_id):
            _domain_is(domains.storage_domain_service(sd_id), types.StorageDomainStatus.ACTIVE)
        held.join(120)
        assert not held.is_alive() and held_errors == [[]], held_errors
        assert vm_service.get().status == types.VmStatus.UP
        for disk in made:
            assert _written_through_outage(lab, vm.id, disk.id, "write -P 0x5e 256k 64k") == []
        vm_service.stop()
        wait_until(lambda: vm_service.get().status == types.VmStatus.DOWN, 120,
                   "the VM to stop")
        nfs_url = _leaf_url(storage_lab, nfs_domain.id, made[0].id)
        for pattern in ("0x3c 0", "0x4d 128k", "0x5e 256k"):
            assert "Pattern verification failed" not in _qemu_io(
                storage_lab, nfs_url, f"read -P {pattern} 64k")
        for pattern in ("0x3c 0", "0x5e 256k"):
            assert _iscsi_io(storage_lab, iscsi_volume, f"read -P {pattern} 64k")
        for image in (["-f", "qcow2", nfs_url],
                      ["--image-opts", _extent_opts(storage_lab, iscsi_volume)]):
            checked = subprocess.run(lab.exec_argv("node1", ["qemu-img", "check", "-q", *image]),
                                     capture_output=True, text=True, check=False, timeout=120)
            assert checked.returncode == 0, checked.stdout + checked.stderr
        vm_service.remove()
        wait_until(lambda: not vms.list(search="name=lab-outage-vm"), 120, "the VM to go")
        wait_until(lambda: not disks.list(search="name=lab-outage-*"), 120, "its disks to go")
    finally:
        _iptables(storage_ns, "-D", *rule, check=False)
        try:  # the next tests need the domains: back before this one's failure is told
            for sd_id in (nfs_domain.id, iscsi_id):
                _domain_is(conn.system_service().storage_domains_service()
                           .storage_domain_service(sd_id), types.StorageDomainStatus.ACTIVE)
        finally:
            conn.close()



def test_a_vm_whose_lun_fails_is_paused_and_resumed_once_it_is_back_with_no_write_lost(
        storage_lab: StorageLab, nfs_domain: NfsDomain, guest_image: GuestImage) -> None:
    """The guest (booted from NFS) writes a numbered line to its disk on the iSCSI domain
    every 200 ms. The LUN goes offline on the target: the guest's write fails in QEMU,
    which pauses the VM (its disks' error policy is "stop") instead of failing the guest;
    the VM shows paused with oVirt's event, the domain inactive, and it stays paused while
    the LUN is out. The LUN back, the domain is active and the engine resumes the VM by
    itself (oVirt's auto_resume): the guest writes on, and after it stops the disk holds
    the last line the guest saw written."""
    site, lab = storage_lab.first, storage_lab.lab
    iscsi_id = _lab_iscsi_domain(site)
    boot = _boot_disk(storage_lab, site, nfs_domain.id, guest_image, name="lab-eio-boot")
    conn = site.connect()
    try:
        system = conn.system_service()
        disks = system.disks_service()
        data = disks.add(types.Disk(name="lab-eio-data", format=types.DiskFormat.COW,
                                    provisioned_size=64 * MIB, sparse=True,
                                    storage_domains=[types.StorageDomain(id=iscsi_id)]))
        wait_until(lambda: disks.disk_service(data.id).get().status == types.DiskStatus.OK,
                   120, "the data disk to be created")
        vms = system.vms_service()
        vm = vms.add(types.Vm(name="lab-eio-vm", cluster=types.Cluster(name="Default"),
                              template=types.Template(name="Blank"), memory=128 * MIB,
                              placement_policy=types.VmPlacementPolicy(
                                  hosts=[types.Host(id=site.host_of(conn, "node1").id)])))
        service = vms.vm_service(vm.id)
        assert service.get().storage_error_resume_behaviour \
            == types.VmStorageErrorResumeBehaviour.AUTO_RESUME  # oVirt's default
        for disk_id, bootable in ((boot, True), (data.id, False)):  # vda, then vdb
            service.disk_attachments_service().add(types.DiskAttachment(
                disk=types.Disk(id=disk_id), interface=types.DiskInterface.VIRTIO,
                bootable=bootable, active=True))
        log = CONSOLE_LOG_DIR / f"{vm.id}.log"
        log.unlink(missing_ok=True)
        service.start()
        wait_until(lambda: service.get().status == types.VmStatus.UP, 180, "the VM to be up")
        wait_until(lambda: log.exists() and BOOT_MARKER in log.read_text(errors="replace"),
                   180, "the guest to boot from its NFS disk")
        _type(lab, vm.id, "write\n")
        wait_until(lambda: _wrote(log) >= 5, 60, "the guest to write to its iSCSI disk")
        domain = system.storage_domains_service().storage_domain_service(iscsi_id)
        _lun_online(lab, False)
        try:
            wait_until(lambda: service.get().status == types.VmStatus.PAUSED, 60,
                       "the VM to be paused by the failed write")
            events = [e.description for e in system.events_service().list(max=100)]
            assert "VM lab-eio-vm has been paused due to storage I/O problem." in events
            _domain_is(domain, types.StorageDomainStatus.INACTIVE)
            stopped_at = _wrote(log)
            time.sleep(2 * STORAGE_PROBE_INTERVAL_S + 1)  # probes that find the LUN out
            assert service.get().status == types.VmStatus.PAUSED  # not resumed into the error
            assert _wrote(log) == stopped_at  # the guest wrote nothing meanwhile
        finally:
            _lun_online(lab, True)
        _domain_is(domain, types.StorageDomainStatus.ACTIVE)
        wait_until(lambda: service.get().status == types.VmStatus.UP, 60,
                   "the engine to resume the VM")
        wait_until(lambda: _wrote(log) >= stopped_at + 5, 60, "the guest to write again")
        events = [e.description for e in system.events_service().list(max=100)]
        assert "VM lab-eio-vm has recovered from paused back to up." in events
        service.stop()
        wait_until(lambda: service.get().status == types.VmStatus.DOWN, 120, "the VM to stop")
        last = _wrote(log)
        [volume] = _iscsi_chain(storage_lab, disks.disk_service(data.id).get().image_id)
        done = subprocess.run(lab.exec_argv("node1", [
            "qemu-io", "-r", "--image-opts", "-c", "read -v 0 64",
            _extent_opts(storage_lab, volume)]), capture_output=True, text=True, check=False,
            timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        # qemu-io's dump: "00000010:  3a 20 64 ...  ..disk.000" (its text column shows
        # letters and digits only): the bytes are read from the hex columns.
        text = b"".join(bytes.fromhex(" ".join(line.split()[1:17]))
                        for line in done.stdout.splitlines()
                        if re.match(r"[0-9a-f]{8}:", line)).decode(errors="replace")
        found = re.search(r"overt-test-guest: disk (\d{8})", text)
        assert found is not None, done.stdout
        # The last write the guest saw done is on the disk (or the one after it, written
        # while the guest stopped).
        assert int(found.group(1)) in (last, last + 1), (found.group(1), last)
        service.remove()
        wait_until(lambda: not vms.list(search="name=lab-eio-vm"), 120, "the VM to go")
    finally:
        _lun_online(lab, True)
        conn.close()


# Linux key codes of what the tests type on a guest's keyboard.
_KEYS = {"b": 48, "u": 22, "s": 31, "y": 21, "w": 17, "r": 19, "i": 23, "t": 20, "e": 18,
         "\n": 28}


def _type(lab: Lab, vm_id: str, text: str) -> None:
    conn = libvirt.open(lab.hypervisor("node1").uri)
    try:
        dom = conn.lookupByUUIDString(vm_id)
        for char in text:
            dom.sendKey(libvirt.VIR_KEYCODE_SET_LINUX, 50, [_KEYS[char]], 1, 0)
    finally:
        conn.close()


def _wrote(log: Path) -> int:
    """The number of the last line the guest says it wrote to its disk (-1: none yet)."""
    found = re.findall(r"overt-test-guest: wrote (\d+)", log.read_text(errors="replace"))
    return int(found[-1]) if found else -1


def _lun_online(lab: Lab, online: bool) -> None:
    """LUN 1 of the lab's target (the iSCSI domain's) in or out of service: out, tgt
    answers every read and write on it "not ready, medium not present" (tgt takes a LUN
    offline only as removable media), as a failed array would; the session stays up."""
    params = "online=1,removable=0" if online else "removable=1,online=0"
    done = subprocess.run(lab.exec_argv("storage", [
        "tgtadm", "--lld", "iscsi", "--mode", "logicalunit", "--op", "update", "--tid", "1",
        "--lun", "1", "--params", params]), capture_output=True, text=True,
        check=False, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def _disks_on_both(conn: sdk.Connection, prefix: str, nfs_id: str, iscsi_id: str
                   ) -> list[types.Disk]:
    """A 64 MiB qcow2 disk on the NFS domain and one on the iSCSI domain, both ok."""
    disks = conn.system_service().disks_service()
    made = [disks.add(types.Disk(name=f"{prefix}-{kind}", format=types.DiskFormat.COW,
                                 provisioned_size=64 * MIB, sparse=True,
                                 storage_domains=[types.StorageDomain(id=sd_id)]))
            for kind, sd_id in (("nfs", nfs_id), ("iscsi", iscsi_id))]
    for disk in made:
        wait_until(lambda d=disk: disks.disk_service(d.id).get().status
                   == types.DiskStatus.OK, 120, "the disks to be created")
    return made


def _running_on_node1(site: Site, conn: sdk.Connection, name: str, disks: list[types.Disk]
                      ) -> tuple[types.Vm, Any]:
    """A VM pinned to node1 with `disks` on virtio-scsi (HMP's qemu-io finds a scsi-hd's
    drive by its qdev id), up; no guest: QEMU runs the disks all the same."""
    vms = conn.system_service().vms_service()
    vm = vms.add(types.Vm(name=name, cluster=types.Cluster(name="Default"),
                          template=types.Template(name="Blank"), memory=128 * MIB,
                          placement_policy=types.VmPlacementPolicy(
                              hosts=[types.Host(id=site.host_of(conn, "node1").id)])))
    service = vms.vm_service(vm.id)
    for disk in disks:
        service.disk_attachments_service().add(types.DiskAttachment(
            disk=types.Disk(id=disk.id), interface=types.DiskInterface.VIRTIO_SCSI,
            active=True))
    service.start()
    wait_until(lambda: service.get().status == types.VmStatus.UP, 180,
               "the VM to be up on node1")
    return vm, service


def _domain_free(site: Site, domain_id: str) -> int:
    conn = site.connect()
    try:
        return int(conn.system_service().storage_domains_service().storage_domain_service(
            domain_id).get().available)
    finally:
        conn.close()


def _counter(log: Path) -> int:
    """The last counter the guest printed on its serial console (it counts from 0 at
    boot, every 100 ms: a guest that rebooted would count from 0 again)."""
    found = re.findall(re.escape(COUNTER_PREFIX) + r"(\d+)", log.read_text(errors="replace"))
    return int(found[-1]) if found else -1


def test_a_running_vms_disk_moves_live_from_nfs_to_iscsi_and_boots_from_there(
        storage_lab: StorageLab, nfs_domain: NfsDomain, guest_image: GuestImage) -> None:
    """Live storage migration through the SDK: a marker written by the running VM's QEMU
    (as its guest writes) on its NFS boot disk; the disk moved to the iSCSI domain while
    the guest runs on (its counter goes on, never from 0) and the VM stays up, the disk
    `locked` meanwhile; QEMU then writes the LUN's new extent, which holds the marker and
    what was written after; the NFS volume is gone; stopped and started, the VM boots
    from the iSCSI domain, and its disk moves live back to NFS (the extent freed)."""
    site, lab = storage_lab.first, storage_lab.lab
    iscsi_id = _lab_iscsi_domain(site)
    disk_id = _boot_disk(storage_lab, site, nfs_domain.id, guest_image, name="lab-lsm-boot")
    # SCSI: HMP's qemu-io finds a scsi-hd's drive by its qdev id (SeaBIOS boots it).
    _new_vm(site, "lab-lsm-vm", disk_id, types.DiskInterface.VIRTIO_SCSI)
    old_image = storage_lab.export_dir / nfs_domain.id / "images" / disk_id
    conn = site.connect()
    try:
        system = conn.system_service()
        vms = system.vms_service()
        [vm] = vms.list(search="name=lab-lsm-vm")
        vm_service = vms.vm_service(vm.id)
        vm_service.update(types.Vm(placement_policy=types.VmPlacementPolicy(
            hosts=[types.Host(id=site.host_of(conn, "node1").id)])))
        log = CONSOLE_LOG_DIR / f"{vm.id}.log"
        log.unlink(missing_ok=True)
        vm_service.start()
        wait_until(lambda: vm_service.get().status == types.VmStatus.UP, 180,
                   "the VM to be up on node1")
        wait_until(lambda: log.exists() and BOOT_MARKER in log.read_text(errors="replace"),
                   180, "the guest to boot from its NFS disk")
        _guest_io(lab, vm.id, disk_id, "write -P 0x5a 512k 64k")
        disk_service = system.disks_service().disk_service(disk_id)
        before = wait_until(lambda: (n := _counter(log)) > 0 and n, 60,
                            "the guest to count")

        disk_service.move(storage_domain=types.StorageDomain(id=iscsi_id))
        seen: set[tuple[types.DiskStatus, types.VmStatus]] = set()

        def moved() -> bool:
            disk, now = disk_service.get(), vm_service.get()
            seen.add((disk.status, now.status))
            return disk.status == types.DiskStatus.OK and \
                disk.storage_domains[0].id == iscsi_id
        wait_until(moved, 600, "the disk to be moved live to the iSCSI domain")
        assert (types.DiskStatus.LOCKED, types.VmStatus.UP) in seen
        assert {vm_status for _disk, vm_status in seen} == {types.VmStatus.UP}
        xml = _domain_xml(lab, "node1", vm.id)
        assert "protocol='iscsi'" in xml and "protocol='nfs'" not in xml
        assert "<mirror" not in xml
        after = _counter(log)
        wait_until(lambda: _counter(log) > after, 30, "the guest to count on")
        assert after > before  # it ran throughout, never rebooted (counting from 0)
        _guest_io(lab, vm.id, disk_id, "write -P 0x6b 640k 64k")  # into the new volume
        assert not old_image.exists() or not [p for p in old_image.iterdir()
                                              if _is_uuid(p.name)]
        [volume] = _iscsi_chain(storage_lab, disk_service.get().image_id)
        vm_service.stop()
        wait_until(lambda: vm_service.get().status == types.VmStatus.DOWN, 120,
                   "the VM to stop")
    finally:
        conn.close()
    for pattern in ("0x5a 512k", "0x6b 640k"):
        assert _iscsi_io(storage_lab, volume, f"read -P {pattern} 64k", check=False), pattern
    checked = subprocess.run(lab.exec_argv("node1", [
        "qemu-img", "check", "-q", "--image-opts", _extent_opts(storage_lab, volume)]),
        capture_output=True, text=True, check=False, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    free = _domain_free(site, iscsi_id)

    def back_to_nfs(conn: sdk.Connection, vm_id: str) -> None:
        """Booted from the iSCSI domain: the disk moves live back to NFS."""
        disk_service = conn.system_service().disks_service().disk_service(disk_id)
        disk_service.move(storage_domain=types.StorageDomain(id=nfs_domain.id))
        wait_until(lambda: (d := disk_service.get()).status == types.DiskStatus.OK
                   and d.storage_domains[0].id == nfs_domain.id, 600,
                   "the disk to be moved live back to NFS")
        assert conn.system_service().vms_service().vm_service(vm_id).get().status \
            == types.VmStatus.UP
        xml = _domain_xml(lab, "node1", vm_id)
        assert "protocol='nfs'" in xml and "protocol='iscsi'" not in xml
        _guest_io(lab, vm_id, disk_id, "write -P 0x7c 768k 64k")

    _run_on(site, "lab-lsm-vm", "node1", "iscsi", while_up=back_to_nfs)  # the new domain
    # The extent went back to the domain's free space; the NFS volume holds everything.
    wait_until(lambda: _domain_free(site, iscsi_id) == free + volume[2], 120,
               "the iSCSI extent to be free again")
    url = _leaf_url(storage_lab, nfs_domain.id, disk_id)
    for pattern in ("0x5a 512k", "0x6b 640k", "0x7c 768k"):
        assert "Pattern verification failed" not in _qemu_io(storage_lab, url,
                                                              f"read -P {pattern} 64k")
    assert len(_nfs_volumes(storage_lab, nfs_domain.id, disk_id)) == 1
    _run_on(site, "lab-lsm-vm", "node1", "nfs")
    conn = site.connect()
    try:  # later tests find the domains as they were
        vms = conn.system_service().vms_service()
        [vm] = vms.list(search="name=lab-lsm-vm")
        vms.vm_service(vm.id).remove()
        wait_until(lambda: not vms.list(search="name=lab-lsm-vm"), 120, "the VM to go")
        wait_until(lambda: not conn.system_service().disks_service().list(
            search="name=lab-lsm-*"), 120, "its disk to go")
    finally:
        conn.close()


def test_a_down_vms_disk_moves_to_iscsi_with_its_snapshot_and_copies_collapsed(
        storage_lab: StorageLab, nfs_domain: NfsDomain, guest_image: GuestImage) -> None:
    """A down VM's NFS boot disk with a snapshot and a marker written over it moves to the
    iSCSI domain as a chain of two extents (the LUN's metadata and the qcow2 headers
    agree; the snapshot's volume lacks the marker), its NFS volumes gone; the VM boots
    from it; a copy back to NFS is one volume holding the marker."""
    site = storage_lab.first
    iscsi_id = _lab_iscsi_domain(site)
    disk_id = _boot_disk(storage_lab, site, nfs_domain.id, guest_image, name="lab-chain-boot")
    _new_vm(site, "lab-chain-vm", disk_id)
    conn = site.connect()
    try:
        system = conn.system_service()
        [vm] = system.vms_service().list(search="name=lab-chain-vm")
        snaps = system.vms_service().vm_service(vm.id).snapshots_service()
        taken = snaps.add(types.Snapshot(description="before the marker",
                                         persist_memorystate=False))
        wait_until(lambda: snaps.snapshot_service(taken.id).get().snapshot_status
                   == types.SnapshotStatus.OK, 120, "the snapshot to be taken")
        _qemu_io(storage_lab, _leaf_url(storage_lab, nfs_domain.id, disk_id),
                 "write -P 0x5a 512k 64k")
        disk_service = system.disks_service().disk_service(disk_id)
        disk_service.move(storage_domain=types.StorageDomain(id=iscsi_id))
        wait_until(lambda: (d := disk_service.get()).status == types.DiskStatus.OK
                   and d.storage_domains[0].id == iscsi_id, 600,
                   "the disk to be moved with its chain")
        chain = _iscsi_chain(storage_lab, disk_service.get().image_id)
        assert len(chain) == 2
        assert _iscsi_io(storage_lab, chain[1], "read -P 0x5a 512k 64k", check=False)
        assert not _iscsi_io(storage_lab, chain[0], "read -P 0x5a 512k 64k", check=False)
        old_image = storage_lab.export_dir / nfs_domain.id / "images" / disk_id
        assert not old_image.exists() or not [p for p in old_image.iterdir()
                                              if _is_uuid(p.name)]
    finally:
        conn.close()
    _run_on(site, "lab-chain-vm", "node1", "iscsi")
    conn = site.connect()
    try:
        disks = conn.system_service().disks_service()
        disks.disk_service(disk_id).copy(storage_domain=types.StorageDomain(id=nfs_domain.id),
                                         disk=types.Disk(name="lab-chain-copy"))
        wait_until(lambda: (found := disks.list(search="name=lab-chain-copy"))
                   and found[0].status == types.DiskStatus.OK, 600, "the copy to be made")
        [copy] = disks.list(search="name=lab-chain-copy")
        [(_volume, meta)] = _nfs_volumes(storage_lab, nfs_domain.id, copy.id).items()
        assert meta["PUUID"] == TOP_OF_CHAIN
        assert _holds_marker(storage_lab, _leaf_url(storage_lab, nfs_domain.id, copy.id))
        disks.disk_service(copy.id).remove()
        vms = conn.system_service().vms_service()
        [vm] = vms.list(search="name=lab-chain-vm")
        vms.vm_service(vm.id).remove()
        wait_until(lambda: not vms.list(search="name=lab-chain-vm"), 120, "the VM to go")
        wait_until(lambda: not disks.list(search="name=lab-chain-*"), 120, "its disks to go")
    finally:
        conn.close()


def test_a_vm_lease_on_the_iscsi_domain_is_held_by_one_node_at_a_time(
        storage_lab: StorageLab) -> None:
    """The lease areas of the iSCSI domain, after its metadata area on the LUN, reached by
    each node's keeper through qemu-storage-daemon's iSCSI client: a VM's lease taken by
    node1 is refused to node2 while node1 renews it, and taken by node2 once released. The
    domain's metadata and the VM's lease set through the SDK stay as they were."""
    site, lab = storage_lab.first, storage_lab.lab
    conn = site.connect()
    vm_id = ""
    nodes = {n: LeaseClient(site.keeper_dir(n) / "keeper.sock") for n in ("node1", "node2")}
    try:
        [domain] = conn.system_service().storage_domains_service().list(search="name=lab-iscsi")
        vms = conn.system_service().vms_service()
        vm = vms.add(types.Vm(name="lab-iscsi-leased", cluster=types.Cluster(name="Default"),
                              template=types.Template(name="Blank"), memory=128 * MIB,
                              lease=types.StorageDomainLease(
                                  storage_domain=types.StorageDomain(id=domain.id))))
        vm_id = vm.id
        assert vms.vm_service(vm.id).get().lease.storage_domain.id == domain.id
        lease = LeaseSpec(domain_id=uuid.UUID(domain.id), server=storage_lab.nfs_address,
                          lun=IscsiSource(portal=storage_lab.nfs_address,
                                          target=lab.topology.iscsi_target(), lun=1),
                          slot=0, io_timeout_s=LEASE_IO_TIMEOUT_S)
        taken = asyncio.run(nodes["node1"].acquire(uuid.UUID(vm_id), lease))
        assert taken["ok"], taken
        second = asyncio.run(nodes["node2"].acquire(uuid.UUID(vm_id), lease))
        assert not second["ok"] and "held by host" in second["error"], second
        asyncio.run(nodes["node1"].release(uuid.UUID(vm_id)))
        moved = asyncio.run(nodes["node2"].acquire(uuid.UUID(vm_id), lease))
        assert moved["ok"], moved
    finally:
        if vm_id:
            for client in nodes.values():
                with contextlib.suppress(Exception):
                    asyncio.run(client.release(uuid.UUID(vm_id)))
            with contextlib.suppress(sdk.Error):
                conn.system_service().vms_service().vm_service(vm_id).remove()
        conn.close()
    with (lab.topology.host_dir(lab.topology.storage) / "lun1.img").open("rb") as f:
        area = f.read(3 * MIB)
    metadata = parse_metadata(area[:MIB].split(b"\0", 1)[0].decode())
    assert metadata["SDUUID"] == domain.id  # the leases did not touch the metadata
    assert area[MIB:MIB + 8] == b"OVLEASE1"  # node1's host id, in the ids area's first slot


def test_a_direct_lun_disk_is_a_whole_lun_a_vm_opens_over_iscsi(
        storage_lab: StorageLab) -> None:
    """LUN 2 of the storage host given to a VM as a direct LUN disk through the SDK: the
    VM's QEMU on node1 opens the whole LUN through its iSCSI client (no slice of it); the
    LUN of the iSCSI domain is refused (409); the disk goes once its VM is gone. The VM's
    lease is on the iSCSI domain: node1's keeper holds it while the VM runs."""
    site, lab = storage_lab.first, storage_lab.lab
    target, portal = lab.topology.iscsi_target(), storage_lab.nfs_address
    conn = site.connect()
    vm_id = disk_id = ""

    def lun_disk(name: str, number: int) -> types.Disk:
        return types.Disk(alias=name, provisioned_size=5 * MIB, lun_storage=types.HostStorage(
            type=types.StorageType.ISCSI, logical_units=[types.LogicalUnit(
                address=portal, port=3260, target=target, lun_mapping=number)]))
    try:
        disks = conn.system_service().disks_service()
        with pytest.raises(sdk.Error) as refused:
            disks.add(lun_disk("lab-lun-taken", 1))
        assert refused.value.code == 409 and "lab-iscsi" in str(refused.value)
        disk_id = disks.add(lun_disk("lab-lun", 2)).id
        wait_until(lambda: disks.disk_service(disk_id).get().provisioned_size == LUN_SIZE, 30,
                   "the direct LUN disk's size to be read from its LUN")
        vms = conn.system_service().vms_service()
        [domain] = conn.system_service().storage_domains_service().list(search="name=lab-iscsi")
        vm_id = vms.add(types.Vm(name="lab-lun-vm", cluster=types.Cluster(name="Default"),
                                 template=types.Template(name="Blank"), memory=128 * MIB,
                                 lease=types.StorageDomainLease(
                                     storage_domain=types.StorageDomain(id=domain.id)))).id
        service = vms.vm_service(vm_id)
        service.disk_attachments_service().add(types.DiskAttachment(
            disk=types.Disk(id=disk_id), interface=types.DiskInterface.VIRTIO, active=True))
        host = site.host_of(conn, "node1")
        service.update(types.Vm(placement_policy=types.VmPlacementPolicy(
            hosts=[types.Host(id=host.id)])))
        service.start()
        wait_until(lambda: service.get().status == types.VmStatus.UP, 180,
                   "the VM with the LUN to be up on node1")
        xml = _domain_xml(lab, "node1", vm_id)
        assert re.search(rf"<source protocol=.iscsi. name=.{re.escape(target)}/2.", xml), xml
        assert "<slices>" not in xml
        held = asyncio.run(LeaseClient(site.keeper_dir("node1") / "keeper.sock").status())
        assert held["vms"][vm_id]["domain_id"] == domain.id, held
        service.stop()
        wait_until(lambda: service.get().status == types.VmStatus.DOWN, 120, "the VM to stop")
        service.remove(detach_only=True)
        wait_until(lambda: not vms.list(search="name=lab-lun-vm"), 120, "the VM to go")
        vm_id = ""
        disks.disk_service(disk_id).remove()
        assert not disks.list(search="name=lab-lun")
        disk_id = ""
    finally:
        if vm_id:
            with contextlib.suppress(sdk.Error):
                conn.system_service().vms_service().vm_service(vm_id).stop()
        conn.close()


def _extent_opts(storage_lab: StorageLab, volume: tuple[str, int, int]) -> str:
    """The image options of a qcow2 volume (id, offset, size) of the lab's LUN 1."""
    _id, offset, size = volume
    return (f"driver=qcow2,file.driver=raw,file.offset={offset},file.size={size},"
            "file.file.driver=iscsi,file.file.transport=tcp,"
            f"file.file.portal={storage_lab.nfs_address}:3260,"
            f"file.file.target={storage_lab.lab.topology.iscsi_target()},file.file.lun=1")


def _iscsi_io(storage_lab: StorageLab, volume: tuple[str, int, int], command: str, *,
              check: bool = True) -> bool:
    """qemu-io on node1 through QEMU's iSCSI client; whether it read what it expected."""
    done = subprocess.run(storage_lab.lab.exec_argv("node1", [
        "qemu-io", "--image-opts", "-c", command, _extent_opts(storage_lab, volume)]),
        capture_output=True, text=True, check=False, timeout=120)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done.returncode == 0 and "Pattern verification failed" not in done.stdout


def _iscsi_chain(storage_lab: StorageLab, leaf: str) -> list[tuple[str, int, int]]:
    """The chain (base first) of volume `leaf` as the LUN's metadata area lists it (each
    volume's parent), checked against the chain qemu-img reads on the LUN over iSCSI."""
    lab = storage_lab.lab
    with (lab.topology.host_dir(lab.topology.storage) / "lun1.img").open("rb") as f:
        metadata = parse_metadata(f.read(MIB).split(b"\0", 1)[0].decode())
    records = {k.removeprefix("VOL_"): v.split(",") for k, v in metadata.items()
               if k.startswith("VOL_")}
    chain, volume = [], leaf
    while volume != TOP_OF_CHAIN:
        record = records[volume]
        chain.insert(0, (volume, int(record[1]), int(record[2])))
        volume = record[6]
    assert records[leaf][7] == "LEAF"
    assert all(records[v][7] == "INTERNAL" for v, _o, _s in chain[:-1])
    done = subprocess.run(lab.exec_argv("node1", [
        "qemu-img", "info", "-U", "--backing-chain", "--output=json", "--image-opts",
        _extent_opts(storage_lab, chain[-1])]), capture_output=True, text=True, check=False,
        timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    offsets = [int(m.group(1)) for layer in reversed(json.loads(done.stdout))
               if (m := re.search(r'"offset":\s*"?(\d+)', layer["filename"]))]
    assert offsets == [offset for _v, offset, _s in chain], done.stdout
    return chain


def _image_digest(image: Path, fmt: str) -> str:
    """The guest's view of an image, as a checksum."""
    raw = image.with_suffix(".check")
    subprocess.run(["qemu-img", "convert", "-f", fmt, "-O", "raw", str(image), str(raw)],
                   check=True)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    raw.unlink()
    return digest


def _imageio_http(method: str, url: str, ca_file: Path, data: bytes | None = None) -> int:
    return _imageio_request(method, url, ca_file, data)[0]


def _imageio_request(method: str, url: str, ca_file: Path, data: bytes | None = None
                     ) -> tuple[int, bytes]:
    """One request to an imageio daemon (a GET reads the first 4 KiB)."""
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca_file)),
                      timeout=30) as http:
        reply = http.request(method, url, content=data,
                             headers={"Range": "bytes=0-4095"} if method == "GET" else {})
        return reply.status_code, reply.content


def _nfs_disk(conn: sdk.Connection, domain_id: str, name: str, disk_format: types.DiskFormat
              ) -> str:
    disks = conn.system_service().disks_service()
    disk = disks.add(types.Disk(name=name, format=disk_format, provisioned_size=64 * MIB,
                                sparse=True, storage_domains=[types.StorageDomain(id=domain_id)]))
    wait_until(lambda: disks.disk_service(disk.id).get().status == types.DiskStatus.OK, 120,
               f"disk {name} to be created")
    return str(disk.id)


def _transfer(conn: sdk.Connection, disk_id: str, direction: types.ImageTransferDirection,
              host_id: str | None = None, fmt: types.DiskFormat = types.DiskFormat.RAW
              ) -> types.ImageTransfer:
    transfers = conn.system_service().image_transfers_service()
    return transfers.add(types.ImageTransfer(
        disk=types.Disk(id=disk_id), direction=direction, format=fmt,
        host=types.Host(id=host_id) if host_id else None))


def _own_bytes(conn: sdk.Connection, disk_id: str, into: Path, ca: Path) -> Path:
    """A `format=cow` download: the qcow2 volume's own bytes, written as they come."""
    own = _transfer(conn, disk_id, types.ImageTransferDirection.DOWNLOAD,
                    fmt=types.DiskFormat.COW)
    assert own.format == types.DiskFormat.COW and "54322/images/" in own.transfer_url
    client.download(own.transfer_url, str(into), str(ca), fmt="raw")
    _finalize(conn, own, disk_id)
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(into)],
                                     check=True, capture_output=True, text=True).stdout)
    assert info["format"] == "qcow2"
    subprocess.run(["qemu-img", "check", "-q", str(into)], check=True)
    return into


def _finalize(conn: sdk.Connection, transfer: types.ImageTransfer, disk_id: str) -> None:
    service = conn.system_service().image_transfers_service().image_transfer_service(
        transfer.id)
    service.finalize()
    wait_until(lambda: service.get().phase == types.ImageTransferPhase.FINISHED_SUCCESS, 120,
               "the transfer to finish")
    disks = conn.system_service().disks_service()
    wait_until(lambda: disks.disk_service(disk_id).get().status == types.DiskStatus.OK, 60,
               "the disk to be unlocked")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_iscsi_disk_is_uploaded_and_downloaded_through_a_nodes_imageio(
        storage_lab: StorageLab, tmp_path: Path) -> None:
    """A qcow2 disk of the iSCSI test's domain (an extent of its LUN): guest data uploaded
    at a node's daemon reads back the same."""
    site, ca = storage_lab.first, storage_lab.first.managed.ca_file
    source = tmp_path / "source.raw"
    with source.open("wb") as f:
        f.truncate(32 * MIB)
        f.seek(3 * MIB)
        f.write(b"\xc3" * MIB)
    conn = site.connect()
    try:
        [sd] = conn.system_service().storage_domains_service().list(search="name=lab-iscsi")
        disk_id = _nfs_disk(conn, sd.id, "lab-iscsi-upload", types.DiskFormat.COW)
        up = _transfer(conn, disk_id, types.ImageTransferDirection.UPLOAD)
        assert "54322/images/" in up.transfer_url
        client.upload(str(source), up.transfer_url, str(ca))
        _finalize(conn, up, disk_id)
        down = _transfer(conn, disk_id, types.ImageTransferDirection.DOWNLOAD)
        back = tmp_path / "back.raw"
        client.download(down.transfer_url, str(back), str(ca), fmt="raw")
        _finalize(conn, down, disk_id)
        assert hashlib.sha256(back.read_bytes()[:32 * MIB]).hexdigest() == \
            hashlib.sha256(source.read_bytes()).hexdigest()
        # format=cow: the qcow2 of the extent, up to its own end (not the whole extent)
        own = _own_bytes(conn, disk_id, tmp_path / "own.qcow2", ca)
        assert own.stat().st_size < 32 * MIB
        guest = tmp_path / "own.raw"
        subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(own),
                        str(guest)], check=True)
        data = guest.read_bytes()
        assert len(data) == 64 * MIB and data[32 * MIB:] == bytes(32 * MIB)
        assert hashlib.sha256(data[:32 * MIB]).hexdigest() == \
            hashlib.sha256(source.read_bytes()).hexdigest()
    finally:
        conn.close()

# ovirt_imageio.client leaves its local helper's unix socket to the garbage collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_nfs_disk_is_uploaded_and_downloaded_through_a_nodes_imageio(
        storage_lab: StorageLab, nfs_domain: NfsDomain, tmp_path: Path) -> None:
    """The engine is off the storage network: the data moves on node2, which reaches the
    NFS export, at its own ovirt-imageio (transfer_url), or through the engine's daemon
    (proxy_url); the SDK's client trusts both with the engine CA file alone."""
    site = storage_lab.first
    ca = site.managed.ca_file
    source = tmp_path / "source.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(source), str(64 * MIB)],
                   check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0xb1 1M 3M",
                    "-c", "write -P 0xb2 40M 512k", str(source)], check=True,
                   capture_output=True)
    conn = site.connect()
    try:
        node2 = site.host_of(conn, "node2")
        disk_id = _nfs_disk(conn, nfs_domain.id, "lab-nfs-upload", types.DiskFormat.COW)
        up = _transfer(conn, disk_id, types.ImageTransferDirection.UPLOAD, node2.id)
        assert up.phase == types.ImageTransferPhase.TRANSFERRING
        assert up.transfer_url.startswith(f"https://{node2.address}:54322/images/")
        ticket = up.transfer_url.rsplit("/", 1)[1]  # the engine's proxy: the same ticket
        assert up.proxy_url != up.transfer_url and up.proxy_url.endswith(f"/images/{ticket}")
        assert up.host.id == node2.id
        client.upload(str(source), up.transfer_url, str(ca))
        _finalize(conn, up, disk_id)
        assert _imageio_http("GET", up.transfer_url, ca) == 403  # the ticket died with it
        checked = subprocess.run(storage_lab.lab.exec_argv("node1", [
            "qemu-img", "check", "-q", _volume_url(storage_lab, nfs_domain.id, disk_id)]),
            capture_output=True, text=True, check=False, timeout=120)
        assert checked.returncode == 0, checked.stdout + checked.stderr

        down = _transfer(conn, disk_id, types.ImageTransferDirection.DOWNLOAD)
        assert "54322/images/" in down.transfer_url  # a host's daemon, picked by the engine
        direct, proxied = tmp_path / "direct.qcow2", tmp_path / "proxied.qcow2"
        client.download(down.transfer_url, str(direct), str(ca), fmt="qcow2")
        client.download(down.proxy_url, str(proxied), str(ca), fmt="qcow2")
        _finalize(conn, down, disk_id)
        assert _image_digest(direct, "qcow2") == _image_digest(source, "qcow2")
        assert _image_digest(proxied, "qcow2") == _image_digest(source, "qcow2")
        # format=cow: the volume on the export, byte for byte
        own = _own_bytes(conn, disk_id, tmp_path / "own.qcow2", ca)
        image_dir = storage_lab.export_dir / nfs_domain.id / "images" / disk_id
        [volume] = [p for p in image_dir.iterdir() if _is_uuid(p.name)]
        assert hashlib.sha256(own.read_bytes()).hexdigest() == \
            hashlib.sha256(volume.read_bytes()).hexdigest()
        assert _image_digest(own, "qcow2") == _image_digest(source, "qcow2")
    finally:
        conn.close()


def test_a_nodes_imageio_ticket_reaches_only_its_own_disk_and_direction(
        storage_lab: StorageLab, nfs_domain: NfsDomain) -> None:
    site = storage_lab.first
    ca = site.managed.ca_file
    conn = site.connect()
    try:
        node1 = site.host_of(conn, "node1")
        mine = _nfs_disk(conn, nfs_domain.id, "lab-nfs-mine", types.DiskFormat.RAW)
        theirs = _nfs_disk(conn, nfs_domain.id, "lab-nfs-theirs", types.DiskFormat.RAW)
        read = _transfer(conn, mine, types.ImageTransferDirection.DOWNLOAD, node1.id)
        write = _transfer(conn, theirs, types.ImageTransferDirection.UPLOAD, node1.id)
        base = read.transfer_url.rsplit("/", 1)[0]
        assert write.transfer_url.rsplit("/", 1)[0] == base  # the same daemon serves both
        assert _imageio_http("GET", read.transfer_url, ca) == 206
        # A download's ticket cannot write its own disk, nor any other.
        assert _imageio_http("PUT", read.transfer_url, ca, b"\xab" * 4096) == 403
        # Another disk's ticket writes that disk only: this one still reads zeros.
        assert _imageio_http("PUT", write.transfer_url, ca, b"\xab" * 4096) == 200
        assert _imageio_request("GET", read.transfer_url, ca) == (206, bytes(4096))
        # Only a ticket reaches a disk: an unknown one reads nothing.
        assert _imageio_http("GET", f"{base}/{uuid.uuid4()}", ca) == 403
        _finalize(conn, write, theirs)
        _finalize(conn, read, mine)
        # Ended transfers' tickets are gone from the node.
        assert _imageio_http("GET", read.transfer_url, ca) == 403
        assert _imageio_http("PUT", write.transfer_url, ca, bytes(4096)) == 403
    finally:
        conn.close()


def test_a_vm_lease_keeps_a_second_copy_off_and_its_loss_stops_the_vm(
        storage_lab: StorageLab, nfs_domain: NfsDomain) -> None:
    """A leased VM runs on node1 and node1's keeper holds the lease on the NFS domain;
    node2 cannot take it while it is renewed; when node1's keeper can no longer reach the
    storage (its qemu-storage-daemon frozen) the VM's QEMU is destroyed before the lease
    expires, and then node2 gets the lease."""
    site = storage_lab.first
    conn = site.connect()
    frozen: int | None = None
    node2 = LeaseClient(site.keeper_dir("node2") / "keeper.sock")
    vm_id = ""
    try:
        vms = conn.system_service().vms_service()
        local = types.StorageDomainLease(storage_domain=types.StorageDomain(id=str(uuid.uuid4())))
        with pytest.raises(sdk.Error) as refused:  # no such domain: refused, nothing made
            vms.add(types.Vm(name="lab-leased", cluster=types.Cluster(name="Default"),
                             template=types.Template(name="Blank"), memory=128 * MIB,
                             lease=local))
        assert refused.value.code == 400 and not vms.list(search="name=lab-leased")
        vm = vms.add(types.Vm(name="lab-leased", cluster=types.Cluster(name="Default"),
                              template=types.Template(name="Blank"), memory=128 * MIB))
        vm_id = vm.id
        service = vms.vm_service(vm.id)
        host1 = site.host_of(conn, "node1")
        service.update(types.Vm(
            lease=types.StorageDomainLease(storage_domain=types.StorageDomain(id=nfs_domain.id)),
            placement_policy=types.VmPlacementPolicy(hosts=[types.Host(id=host1.id)])))
        assert service.get().lease.storage_domain.id == nfs_domain.id
        service.start()
        wait_until(lambda: service.get().status == types.VmStatus.UP, 180, "the VM to be up")
        held = asyncio.run(LeaseClient(site.keeper_dir("node1") / "keeper.sock").status())
        assert vm.id in held["vms"], held
        lease = LeaseSpec(domain_id=uuid.UUID(nfs_domain.id), server=storage_lab.nfs_address,
                          export="/export", slot=held["vms"][vm.id]["slot"],
                          io_timeout_s=LEASE_IO_TIMEOUT_S)

        wait_until(lambda: asyncio.run(_lease_facts(site, host1.id, vm.id)) == (True, False),
                   30, "the engine to record node1's renewals")

        second = asyncio.run(node2.acquire(uuid.UUID(vm.id), lease))
        assert not second["ok"] and "held by host" in second["error"], second
        assert _running(site.lab, "node1", vm.id)

        frozen = storage_daemon_of(site.keeper_dir("node1"), nfs_domain.id)
        os.kill(frozen, signal.SIGSTOP)  # node1's keeper can no longer read or write
        kills_file = site.keeper_dir("node1") / "kills.jsonl"

        def killed() -> list[dict[str, Any]]:
            lines = kills_file.read_text().splitlines() if kills_file.exists() else []
            return [k for k in map(json.loads, lines) if k["vm_id"] == vm.id]
        kills = wait_until(killed, 8 * LEASE_IO_TIMEOUT_S + 10,
                           "node1's keeper to stop the VM")
        assert kills[0]["stopped"] and "renew" in kills[0]["reason"], kills
        assert not _running(site.lab, "node1", vm.id)
        wait_until(lambda: asyncio.run(_lease_facts(site, host1.id, vm.id))[1], 30,
                   "the engine to judge the VM's lease expired")

        taken = asyncio.run(node2.acquire(uuid.UUID(vm.id), lease))
        assert taken["ok"], taken
        wait_until(lambda: service.get().status == types.VmStatus.DOWN, 60,
                   "the engine to see the VM down")
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGCONT)
        if vm_id:
            with contextlib.suppress(Exception):
                asyncio.run(node2.release(uuid.UUID(vm_id)))
            with contextlib.suppress(sdk.Error):
                conn.system_service().vms_service().vm_service(vm_id).stop()
        conn.close()


async def _lease_facts(site: Site, host_id: str, vm_id: str) -> tuple[bool | None, bool]:
    """What the engine's lease queries say of the host and the VM (read from its database)."""
    db = Database(site.managed.db)
    try:
        async with db.transaction() as session:
            vm_known = await session.get(VmLeaseRenewal, uuid.UUID(vm_id)) is not None
            return (await host_renews_storage_lease(session, uuid.UUID(host_id)),
                    not vm_known or await vm_lease_expired(session, uuid.UUID(vm_id)))
    finally:
        await db.dispose()


def _running(lab: Lab, node: str, vm_id: str) -> bool:
    conn = libvirt.open(lab.hypervisor(node).uri)
    try:
        return bool(conn.lookupByUUIDString(vm_id).isActive())
    except libvirt.libvirtError:
        return False
    finally:
        conn.close()


def storage_daemon_of(keeper_dir: Path, domain_id: str) -> int:
    """The qemu-storage-daemon exporting the lease areas of storage domain `domain_id` on a
    node (found by its mountpoints: a keeper runs one per domain it holds leases on)."""
    areas = str(keeper_dir / "areas" / domain_id) + "/"
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                if argv[0].endswith(b"qemu-storage-daemon") and areas.encode() in b" ".join(argv):
                    return int(proc.name)
    raise AssertionError(f"no qemu-storage-daemon serves {areas}")


def _volume_url(storage_lab: StorageLab, domain_id: str, disk_id: str) -> str:
    image_dir = storage_lab.export_dir / domain_id / "images" / disk_id
    volume = next(p.name for p in image_dir.iterdir() if _is_uuid(p.name))
    return f"nfs://{storage_lab.nfs_address}/export/{domain_id}/images/{disk_id}/{volume}"


def _domain_xml(lab: Lab, node: str, vm_id: str) -> str:
    conn = libvirt.open(lab.hypervisor(node).uri)
    try:
        return str(conn.lookupByUUIDString(vm_id).XMLDesc(0))
    finally:
        conn.close()


def _virtual_size(guest: GuestImage) -> int:
    out = subprocess.run(["qemu-img", "info", "--output=json", str(guest.qcow2_disk)],
                         capture_output=True, text=True, check=True).stdout
    return int(json.loads(out)["virtual-size"])


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True



def _login(storage_lab: StorageLab, target: str, password: str | None
           ) -> subprocess.CompletedProcess[str]:
    """qemu-img on node1 opening LUN 1 of `target`, with CHAP `password` if given (a secret
    object read from a file, as the nodes do)."""
    options = (f"driver=iscsi,transport=tcp,portal={storage_lab.nfs_address}:3260,"
               f"target={target},lun=1")
    with tempfile.NamedTemporaryFile("w", dir=storage_lab.base, delete=False) as secret:
        secret.write(password or "")
    objects = ["--object", f"secret,id=chap,file={secret.name}"] if password else []
    auth = f",user={CHAP_USER},password-secret=chap" if password else ""
    try:
        return subprocess.run(storage_lab.lab.exec_argv("node1", [
            "qemu-img", "info", *objects, "--image-opts", options + auth]),
            capture_output=True, text=True, check=False, timeout=60)
    finally:
        Path(secret.name).unlink()


def _files_holding(root: Path, text: str) -> list[Path]:
    needle, found = text.encode(), []
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size < 64 * MIB and needle in path.read_bytes():
            found.append(path)
    return found


def test_iscsi_discovery_login_and_lun_list_name_the_lun_of_a_new_domain(
        storage_lab: StorageLab) -> None:
    """oVirt's flow through the SDK against tgt: node1 discovers the portal's targets, a
    login with a wrong CHAP password is refused plainly, the right one is remembered, the
    host's storage lists the CHAP target's LUN by its SCSI id (VPD 0x83, udev's form), and
    a domain added by that id is laid out on LUN 1 and becomes active. Undone afterwards
    (the CHAP test below uses the LUN)."""
    server = storage_lab.lab.storage_server()
    target, secret = server.chap_target_iqn, server.chap_secret()
    address = storage_lab.nfs_address
    conn = storage_lab.first.connect()
    try:
        host1 = storage_lab.first.host_of(conn, "node1")
        host = conn.system_service().hosts_service().host_service(host1.id)
        found = host.iscsi_discover(iscsi=types.IscsiDetails(address=address, port=3260))
        assert set(found) == {server.target_iqn, target}, found
        details = host.discover_iscsi(iscsi=types.IscsiDetails(address=address, port=3260))
        assert {(d.target, d.address, d.port) for d in details} == {
            (server.target_iqn, address, 3260), (target, address, 3260)}
        with pytest.raises(sdk.Error) as refused:
            host.iscsi_login(iscsi=types.IscsiDetails(address=address, port=3260, target=target,
                                                      username=CHAP_USER, password="not-it"))
        assert "refused the login" in str(refused.value) and secret not in str(refused.value)
        assert host.storage_service().list() == []
        host.iscsi_login(iscsi=types.IscsiDetails(address=address, port=3260, target=target,
                                                  username=CHAP_USER, password=secret))
        listed_all = host.storage_service().list()  # LUN 1, and LUN 2 for direct LUN disks
        assert sorted(s.logical_units[0].lun_mapping for s in listed_all) == [1, 2]
        [listed] = [s for s in listed_all if s.logical_units[0].lun_mapping == 1]
        [lun] = listed.logical_units
        assert lun.id.startswith("36") and len(lun.id) == 33, lun.id
        assert (listed.id, listed.type, lun.address, lun.port, lun.target, lun.lun_mapping,
                lun.size, lun.vendor_id, lun.status) == (
            lun.id, types.StorageType.ISCSI, address, 3260, target, 1, 256 * MIB, "IET",
            types.LunStatus.FREE)
        sds = conn.system_service().storage_domains_service()
        added = sds.add(types.StorageDomain(
            name="lab-by-scsi-id", type=types.StorageDomainType.DATA,
            host=types.Host(id=host1.id), storage=types.HostStorage(
                type=types.StorageType.ISCSI, logical_units=[types.LogicalUnit(
                    id=lun.id, address=address, port=3260, target=target,
                    username=CHAP_USER, password=secret)])))
        # oVirt's shape: the LUN is the volume group's logical unit, by its SCSI id.
        [unit] = added.storage.volume_group.logical_units
        assert (unit.id, unit.target, unit.lun_mapping, unit.size, unit.vendor_id) == (
            lun.id, target, 1, 256 * MIB, "IET")
        sd = sds.storage_domain_service(added.id)
        wait_until(lambda: sd.get().status == types.StorageDomainStatus.UNATTACHED, 60,
                   "the domain on the LUN named by its SCSI id to be written")
        dc = conn.system_service().data_centers_service().list(search="name=Default")[0]
        attached = conn.system_service().data_centers_service().data_center_service(
            dc.id).storage_domains_service()
        attached.add(types.StorageDomain(id=added.id))
        mine = attached.storage_domain_service(added.id)
        wait_until(lambda: mine.get().status == types.StorageDomainStatus.ACTIVE, 60,
                   "the domain to be active")
        [again] = [s for s in host.storage_service().list() if s.id == lun.id]
        assert again.logical_units[0].status == types.LunStatus.USED
        [unit] = mine.get().storage.volume_group.logical_units
        assert (unit.id, unit.storage_domain_id) == (lun.id, added.id)
        # The active domain keeps the host logged in to its target.
        logout = types.Action(iscsi=types.IscsiDetails(address=address, target=target))
        with pytest.raises(sdk.Error) as in_use:
            host._internal_action(logout, "iscsilogout", None, None, None, True)
        assert in_use.value.code == 409 and "lab-by-scsi-id" in str(in_use.value)
        mine.deactivate()
        wait_until(lambda: mine.get().status == types.StorageDomainStatus.MAINTENANCE, 60,
                   "the domain to be in maintenance")
        mine.remove()
        wait_until(lambda: sd.get().status == types.StorageDomainStatus.UNATTACHED, 60,
                   "the domain to be detached")
        sd.remove()
        # Logged out, the host lists no LUN; logged in again for the tests below.
        host._internal_action(logout, "iscsilogout", None, None, None, True)
        assert host.storage_service().list() == []
        host.iscsi_login(iscsi=types.IscsiDetails(address=address, port=3260, target=target,
                                                  username=CHAP_USER, password=secret))
    finally:
        conn.close()
    backing = storage_lab.lab.topology.host_dir(storage_lab.lab.topology.storage) / \
        "chap-lun1.img"
    with backing.open("r+b") as f:
        assert parse_metadata(f.read(MIB).split(b"\0", 1)[0].decode())["SDUUID"] == added.id
        f.seek(0)
        f.write(bytes(MIB))  # the LUN blank again for the CHAP test


def test_an_iscsi_domain_on_a_chap_target_is_reached_with_its_sealed_password(
        storage_lab: StorageLab, guest_image: GuestImage) -> None:
    """The lab's CHAP target refuses a login without a password or with a wrong one; a
    domain added with a wrong password fails with the target's refusal said plainly; with
    the right one the node writes the domain's metadata, makes a disk on it, and a VM
    boots from that disk (libvirt logs in with its iSCSI auth secret). The password is in
    no answer, event, domain XML or log of the engine and agents."""
    server = storage_lab.lab.storage_server()
    target, secret = server.chap_target_iqn, server.chap_secret()
    refused = [_login(storage_lab, target, None), _login(storage_lab, target, secret + "x")]
    for attempt in refused:
        assert attempt.returncode != 0 and "failed to log in" in attempt.stderr.lower(), \
            attempt.stderr
    granted = _login(storage_lab, target, secret)
    assert granted.returncode == 0 and "virtual size: 256 MiB" in granted.stdout, granted.stderr

    def lun(password: str) -> types.HostStorage:
        return types.HostStorage(type=types.StorageType.ISCSI, logical_units=[types.LogicalUnit(
            id="1", address=storage_lab.nfs_address, port=3260, target=target,
            username=CHAP_USER, password=password)])

    conn = storage_lab.first.connect()
    try:
        host1 = storage_lab.first.host_of(conn, "node1")
        sds = conn.system_service().storage_domains_service()
        wrong = sds.add(types.StorageDomain(name="lab-chap-wrong", host=types.Host(id=host1.id),
                                            type=types.StorageDomainType.DATA,
                                            storage=lun("not-" + secret)))
        wait_until(lambda: not sds.list(search="name=lab-chap-wrong"), 60,
                   "the domain with a wrong password to be dropped")
        events = [e.description for e in conn.system_service().events_service().list(max=30)]
        failed = [e for e in events if "Adding storage domain lab-chap-wrong failed" in e]
        assert failed and all("the iSCSI target refused the login" in e for e in failed), events
        assert wrong.id not in {d.id for d in sds.list()}

        added = sds.add(types.StorageDomain(name="lab-chap", host=types.Host(id=host1.id),
                                            type=types.StorageDomainType.DATA,
                                            storage=lun(secret)))
        sd = sds.storage_domain_service(added.id)
        wait_until(lambda: sd.get().status == types.StorageDomainStatus.UNATTACHED, 60,
                   "the CHAP domain to be written")
        [own] = sd.storage_connections_service().list()
        assert (own.username, own.password) == (CHAP_USER, None)
        dc = conn.system_service().data_centers_service().list(search="name=Default")[0]
        attached = conn.system_service().data_centers_service().data_center_service(
            dc.id).storage_domains_service()
        attached.add(types.StorageDomain(id=added.id))
        wait_until(lambda: attached.storage_domain_service(added.id).get().status
                   == types.StorageDomainStatus.ACTIVE, 60, "the CHAP domain to be active")
        disks = conn.system_service().disks_service()
        disk = disks.add(types.Disk(name="lab-chap-disk", format=types.DiskFormat.COW,
                                    provisioned_size=_virtual_size(guest_image),
                                    storage_domains=[types.StorageDomain(id=added.id)]))
        wait_until(lambda: disks.disk_service(disk.id).get().status == types.DiskStatus.OK,
                   60, "the disk on the CHAP domain to be made")
        hosts = conn.system_service().hosts_service()
        assert {h.status for h in hosts.list()} == {types.HostStatus.UP}  # both reach it
        events = [e.description for e in conn.system_service().events_service().list(max=100)]
    finally:
        conn.close()
    backing = storage_lab.lab.topology.host_dir(storage_lab.lab.topology.storage) / \
        "chap-lun1.img"
    with backing.open("rb") as f:
        metadata = parse_metadata(f.read(MIB).split(b"\0", 1)[0].decode())
    assert metadata["SDUUID"] == added.id and metadata["POOL_UUID"] == dc.id
    [record] = [v for k, v in metadata.items() if k.startswith("VOL_")]
    image, offset, length = record.split(",")[:3]
    assert image == disk.id
    _write_guest(storage_lab, guest_image, target, secret, int(offset), int(length))
    _new_vm(storage_lab.first, "lab-chap-vm", disk.id)
    shown: list[str] = []
    _run_on(storage_lab.first, "lab-chap-vm", "node1", "iscsi", while_up=lambda _conn, vm_id:
            shown.append(_domain_xml(storage_lab.lab, "node1", vm_id)))
    assert f"<auth username='{CHAP_USER}'>" in shown[0] and secret not in shown[0]
    assert not any(secret in e for e in events)
    assert _files_holding(storage_lab.base, secret) == []


def _lun_opts(storage_lab: StorageLab, target: str, lun: int, chap: bool) -> list[str]:
    """qemu-img/qemu-io arguments opening a whole LUN of the lab's portal (with the CHAP
    secret object `chap`, whose file the caller gives)."""
    auth = f",user={CHAP_USER},password-secret=chap" if chap else ""
    return ["--image-opts", f"driver=iscsi,transport=tcp,portal={storage_lab.nfs_address}:3260,"
            f"target={target},lun={lun}{auth}"]


def _on_lun(storage_lab: StorageLab, argv: list[str], target: str, lun: int,
            secret: str | None) -> subprocess.CompletedProcess[str]:
    """`argv` (qemu-img or qemu-io, then its options) on node1 with the LUN's image options
    last, and the CHAP secret in a file that lives as long as the call."""
    with tempfile.NamedTemporaryFile("w", dir=storage_lab.base, delete=False) as file:
        file.write(secret or "")
    objects = ["--object", f"secret,id=chap,file={file.name}"] if secret else []
    opts = _lun_opts(storage_lab, target, lun, secret is not None)
    if argv[0] == "qemu-img":  # convert: the LUN is the target image
        opts = ["-n", *argv[2:], "--target-image-opts", opts[1]]
        argv = argv[:2]
    try:
        return subprocess.run(storage_lab.lab.exec_argv("node1", [*argv, *objects, *opts]),
                              capture_output=True, text=True, check=False, timeout=300)
    finally:
        Path(file.name).unlink()


def _boot_from_lun_and_write(storage_lab: StorageLab, conn: sdk.Connection, name: str,
                             disk_id: str, target: str, lun: int, secret: str | None) -> str:
    """A VM on node1 whose boot disk is direct LUN disk `disk_id`: it boots from the LUN,
    its QEMU writes a marker at 200 MiB (as the guest would), and once it is down the
    marker is read back from the LUN over iSCSI. The domain XML it ran with."""
    vms = conn.system_service().vms_service()
    vm_id = vms.add(types.Vm(name=name, cluster=types.Cluster(name="Default"),
                             template=types.Template(name="Blank"), memory=128 * MIB)).id
    service = vms.vm_service(vm_id)
    try:
        # virtio-scsi: the disk's qdev (`ua-ID`) is its SCSI device, which holds the drive
        # HMP `qemu-io -d` writes through (a virtio-blk proxy holds none); SeaBIOS boots it.
        service.disk_attachments_service().add(types.DiskAttachment(
            disk=types.Disk(id=disk_id), interface=types.DiskInterface.VIRTIO_SCSI,
            bootable=True, active=True))
        host = storage_lab.first.host_of(conn, "node1")
        service.update(types.Vm(placement_policy=types.VmPlacementPolicy(
            hosts=[types.Host(id=host.id)])))
        log = CONSOLE_LOG_DIR / f"{vm_id}.log"
        log.unlink(missing_ok=True)
        service.start()
        wait_until(lambda: service.get().status == types.VmStatus.UP, 180,
                   f"VM {name} to be up on node1")
        xml = _domain_xml(storage_lab.lab, "node1", vm_id)
        wait_until(lambda: log.exists() and BOOT_MARKER in log.read_text(errors="replace"),
                   180, f"the guest of {name} to boot from its direct LUN")
        _guest_io(storage_lab.lab, vm_id, disk_id, "write -P 0x5a 200M 64k")
        service.stop()
        wait_until(lambda: service.get().status == types.VmStatus.DOWN, 120, "the VM to stop")
    finally:
        with contextlib.suppress(sdk.Error):
            service.stop()
        wait_until(lambda: service.get().status == types.VmStatus.DOWN, 120, "the VM to stop")
        service.remove(detach_only=True)
        wait_until(lambda: not vms.list(search=f"name={name}"), 120, f"VM {name} to go")
    read = _on_lun(storage_lab, ["qemu-io", "-r", "-c", "read -P 0x5a 200M 64k"], target,
                   lun, secret)
    assert "read 65536/65536 bytes" in read.stdout and "Pattern verification failed" \
        not in read.stdout, read.stdout + read.stderr
    return xml


def test_a_direct_lun_disk_named_by_scsi_id_boots_a_vm_that_writes_it(
        storage_lab: StorageLab, guest_image: GuestImage) -> None:
    """As the SDK gives a LUN to a VM: node1 logs in to the target, the disk names LUN 2 by
    the SCSI id the host's storage lists; the test guest, written onto the LUN, boots a VM
    from it on node1, whose QEMU writes the LUN; the marker is on the LUN afterwards."""
    target, address = storage_lab.lab.topology.iscsi_target(), storage_lab.nfs_address
    copied = _on_lun(storage_lab, ["qemu-img", "convert", "-f", "qcow2",
                                   str(guest_image.qcow2_disk)], target, 2, None)
    assert copied.returncode == 0, copied.stderr
    conn = storage_lab.first.connect()
    disk_id = ""
    try:
        host = conn.system_service().hosts_service().host_service(
            storage_lab.first.host_of(conn, "node1").id)
        host.iscsi_login(iscsi=types.IscsiDetails(address=address, port=3260, target=target))
        [lun] = [s.logical_units[0] for s in host.storage_service().list()
                 if s.logical_units[0].target == target and s.logical_units[0].lun_mapping == 2]
        assert lun.id.startswith("36") and lun.status == types.LunStatus.FREE, lun.id
        disks = conn.system_service().disks_service()
        disk = disks.add(types.Disk(alias="lab-lun-by-id", lun_storage=types.HostStorage(
            type=types.StorageType.ISCSI, logical_units=[types.LogicalUnit(
                id=lun.id, address=address, port=3260, target=target)])))
        disk_id = disk.id
        [unit] = disk.lun_storage.logical_units
        assert (unit.target, unit.lun_mapping) == (target, 2)
        wait_until(lambda: disks.disk_service(disk_id).get().provisioned_size == LUN_SIZE, 30,
                   "the direct LUN disk's size to be read from its LUN")
        xml = _boot_from_lun_and_write(storage_lab, conn, "lab-lun-id-vm", disk_id, target, 2,
                                       None)
        assert re.search(rf"<source protocol=.iscsi. name=.{re.escape(target)}/2.", xml), xml
        assert "<auth" not in xml
    finally:
        if disk_id:
            with contextlib.suppress(sdk.Error):
                conn.system_service().disks_service().disk_service(disk_id).remove()
        conn.close()


def test_a_direct_lun_disk_on_a_chap_target_boots_a_vm_with_its_sealed_password(
        storage_lab: StorageLab, guest_image: GuestImage) -> None:
    """LUN 2 of the CHAP target as a direct LUN disk: a wrong password is refused (400,
    no disk made, the password in no fault); with the right one the disk keeps the user
    (shown) and the password (sealed), and a VM boots from the LUN on node1 (libvirt logs
    in with its auth secret) and writes it. The password is in no event or domain XML."""
    server = storage_lab.lab.storage_server()
    target, secret, address = server.chap_target_iqn, server.chap_secret(), \
        storage_lab.nfs_address
    copied = _on_lun(storage_lab, ["qemu-img", "convert", "-f", "qcow2",
                                   str(guest_image.qcow2_disk)], target, 2, secret)
    assert copied.returncode == 0, copied.stderr
    conn = storage_lab.first.connect()
    disk_id = ""
    try:
        host = conn.system_service().hosts_service().host_service(
            storage_lab.first.host_of(conn, "node1").id)
        host.iscsi_login(iscsi=types.IscsiDetails(address=address, port=3260, target=target,
                                                  username=CHAP_USER, password=secret))
        [lun] = [s.logical_units[0] for s in host.storage_service().list()
                 if s.logical_units[0].target == target and s.logical_units[0].lun_mapping == 2]
        disks = conn.system_service().disks_service()

        def lun_disk(password: str) -> types.Disk:
            return disks.add(types.Disk(alias="lab-chap-lun", lun_storage=types.HostStorage(
                type=types.StorageType.ISCSI, logical_units=[types.LogicalUnit(
                    id=lun.id, address=address, port=3260, target=target,
                    username=CHAP_USER, password=password)])))
        with pytest.raises(sdk.Error) as refused:
            lun_disk("not-" + secret)
        assert refused.value.code == 400 and "CHAP" in str(refused.value), refused.value
        assert secret not in str(refused.value)
        assert not disks.list(search="name=lab-chap-lun")
        disk = lun_disk(secret)
        disk_id = disk.id
        [unit] = disk.lun_storage.logical_units
        assert (unit.lun_mapping, unit.username, unit.password) == (2, CHAP_USER, None)
        wait_until(lambda: disks.disk_service(disk_id).get().provisioned_size == 256 * MIB,
                   30, "the CHAP LUN's size to be read (the probe logs in with the password)")
        xml = _boot_from_lun_and_write(storage_lab, conn, "lab-chap-lun-vm", disk_id, target,
                                       2, secret)
        assert f"<auth username='{CHAP_USER}'>" in xml and secret not in xml
        events = [e.description for e in conn.system_service().events_service().list(max=100)]
        assert not any(secret in e for e in events)
    finally:
        if disk_id:
            with contextlib.suppress(sdk.Error):
                conn.system_service().disks_service().disk_service(disk_id).remove()
        conn.close()


def _write_guest(storage_lab: StorageLab, guest: GuestImage, target: str, secret: str,
                 offset: int, length: int) -> None:
    """The guest's disk written into the qcow2 volume at `offset` of the CHAP LUN."""
    extent = (f"driver=qcow2,file.driver=raw,file.offset={offset},file.size={length},"
              f"file.file.driver=iscsi,file.file.transport=tcp,"
              f"file.file.portal={storage_lab.nfs_address}:3260,file.file.target={target},"
              f"file.file.lun=1,file.file.user={CHAP_USER},file.file.password-secret=chap")
    with tempfile.NamedTemporaryFile("w", dir=storage_lab.base, delete=False) as file:
        file.write(secret)
    try:
        copied = subprocess.run(storage_lab.lab.exec_argv("node1", [
            "qemu-img", "convert", "--object", f"secret,id=chap,file={file.name}", "-n",
            "-f", "qcow2", str(guest.qcow2_disk), "--target-image-opts", extent]),
            capture_output=True, text=True, check=False, timeout=300)
    finally:
        Path(file.name).unlink()
    assert copied.returncode == 0, copied.stderr


def test_a_detached_domain_is_imported_by_another_engine_with_its_disks(
        storage_lab: StorageLab, nfs_domain: NfsDomain) -> None:
    conn = storage_lab.first.connect()
    try:
        disks = conn.system_service().storage_domains_service().storage_domain_service(
            nfs_domain.id).disks_service().list()
        assert disks, "the VM test leaves a disk on the domain"
        wanted = {d.id: (d.name, d.provisioned_size) for d in disks}
        attached = conn.system_service().data_centers_service().data_center_service(
            nfs_domain.dc_id).storage_domains_service().storage_domain_service(nfs_domain.id)
        attached.deactivate()
        wait_until(lambda: attached.get().status == types.StorageDomainStatus.MAINTENANCE, 60,
                   "maintenance")
        attached.remove()
        sd = conn.system_service().storage_domains_service().storage_domain_service(
            nfs_domain.id)
        wait_until(lambda: sd.get().status == types.StorageDomainStatus.UNATTACHED, 120,
                   "the domain to be detached")
    finally:
        conn.close()
    metadata = parse_metadata(
        (storage_lab.export_dir / nfs_domain.id / "dom_md" / "metadata").read_text())
    assert metadata["POOL_UUID"] == ""

    # The second engine's agent shares node2 with the first's (each lab node has one
    # libvirtd), which a node never does outside tests: this test comes last.
    broker = open_broker(SYSTEM_RABBITMQ)
    second: Site | None = None
    try:
        # (54322 is the first site's node imageio daemon on node2.)
        second = _start_site(storage_lab.lab, "second", storage_lab.base, broker, ["node2"],
                             node_port=54329)
        conn = second.connect()
        try:
            host = second.host_of(conn, "node2")
            sds = conn.system_service().storage_domains_service()
            assert sds.list() == [] or all(s.storage.type != types.StorageType.NFS
                                           for s in sds.list())
            imported = sds.add(types.StorageDomain(
                name="lab-nfs-imported", type=types.StorageDomainType.DATA, import_=True,
                host=types.Host(id=host.id),
                storage=types.HostStorage(type=types.StorageType.NFS,
                                          address=storage_lab.nfs_address, path="/export")))
            service = sds.storage_domain_service(imported.id)
            wait_until(lambda: service.get().status == types.StorageDomainStatus.UNATTACHED,
                       120, "the domain to be imported")
            found = {d.id: (d.name, d.provisioned_size)
                     for d in service.disks_service().list()}
            assert found == wanted
            dc = conn.system_service().data_centers_service().list(search="name=Default")[0]
            attached2 = conn.system_service().data_centers_service().data_center_service(
                dc.id).storage_domains_service()
            attached2.add(types.StorageDomain(id=imported.id))
            wait_until(lambda: attached2.storage_domain_service(imported.id).get().status
                       == types.StorageDomainStatus.ACTIVE, 120, "the domain to be active")
        finally:
            conn.close()
        metadata = parse_metadata(
            (storage_lab.export_dir / nfs_domain.id / "dom_md" / "metadata").read_text())
        assert metadata["POOL_UUID"] == dc.id
        boot = next(d for d, (name, _size) in wanted.items() if name == "lab-nfs-boot")
        _new_vm(second, "lab-nfs-imported-vm", boot)
        _run_on(second, "lab-nfs-imported-vm", "node2")
    finally:
        if second is not None:
            second.stop()
        close_broker(broker)
