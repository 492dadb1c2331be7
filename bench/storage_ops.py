"""Shared storage operations in the lab: Overt's API against the raw tools on the same node.

The lab of `tests/e2e/lab/test_shared_storage.py` (`storage_lab`: the storage host's
nfs-ganesha export and tgt LUN, an engine fully managed over RabbitMQ, agents on node1 and
node2), with its NFS domain and its iSCSI domain on LUN 1.

Copy, NFS -> iSCSI: a qcow2 (COW) disk of `--size-mib` on the NFS domain holding
`--data-mib` of data (8 MiB runs with holes between, written by qemu-io on node1) is copied
to the iSCSI domain through the API (`disk_service.copy` to the iSCSI domain, timed from
the request until the new disk is `ok`), and with `qemu-img convert -n` on node1. The raw
tool writes the same source into the copy's extent as the agent does (a fresh qcow2 header
of the same size, then the same `qemu-img convert -q -n -O qcow2` line, the same `nfs://`
URL and `json:` iSCSI options), inside node1's namespaces.

Upload, NFS then iSCSI: a qcow2 image of `--size-mib` with `--data-mib` of random data
(`bench.image_transfer.make_source`, on this machine) goes into a new qcow2 disk of the
domain (made through the API, not timed) two ways, alternating: the SDK's upload flow
(an image transfer on node1, `ovirt_imageio.client.upload` to its `transfer_url`, with
`--upload-workers` connections, `finalize`, until `finished_success`: node1's imageio
daemon writing through qemu-nbd over `nfs://` or the extent's `json:` iSCSI options), and
`qemu-img convert -n -t writeback` of the same image into the disk's volume on node1.
The upload's rows also say its parts (the transfer added, the data sent, finalized) and
the CPU seconds of the client (this process and its qemu-nbd), node1's daemon and the
transfer's qemu-nbd, against `qemu-img convert`'s. One disk at a time: the lab's LUN
holds one 1 GiB qcow2 extent.

Snapshot and live merge, NFS: a running VM (no guest OS: QEMU runs its disk all the same)
with a `--size-mib` qcow2 data disk on the NFS domain (virtio-scsi); a live snapshot through
the API (`snapshots_service.add`, `persist_memorystate=False`) until it is `ok`; then
`--data-mib` written into the new top volume by the VM's own QEMU (HMP `qemu-io`, as the
guest would write); then the snapshot removed (a live merge: an active block commit and
its pivot) until it is gone. The raw tools do the same on the same node to a second VM
run outside Overt (a copy of the domain Overt ran, with its own disk on the same domain):
`qemu-img create` of the overlay on the export, `virsh snapshot-create --disk-only
--no-metadata --reuse-external --atomic` (the XML the agent sends), the same write, then
`virsh blockcommit --active --pivot`. The API and the raw tools alternate run by run (and
which goes first).

Snapshot and live merge, iSCSI (`--parts` with `iscsi`): the same through the API alone, on
a disk of `--iscsi-size-mib` (data in proportion): the lab's LUN is 2 GiB, and a 1 GiB qcow2
volume takes a 1,029 MiB extent, so a 1 GiB disk and its overlay do not both fit; a raw
`virsh` overlay would need an extent outside the engine's allocation.

"step" figures are the node's part of the API's jobs (the job step's start to end): the
agent's copy, its disk snapshot, its block commit with the pivot.
Needs root and the lab (`OVERT_TEST_LAB_PREFIX`, `OVERT_TEST_LAB_BLOCK` as for the tests).
Usage: .venv/bin/python -m bench.storage_ops [--size-mib 1024] [--data-mib 512] [--runs 3]
       [--iscsi-size-mib 512] [--upload-workers 4] [--parts copy,upload,snapshot,iscsi]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libvirt
import ovirtsdk4.types as types
import pytest
from ovirt_imageio import client
from tests.e2e.lab.test_shared_storage import (
    MIB,
    NfsDomain,
    StorageLab,
    _domain_xml,
    _guest_io,
    _iscsi_chain,
    _lab_iscsi_domain,
    _nfs_volumes,
    nfs_domain,
    storage_lab,
)
from tests.support.demo import wait_until

from bench.image_transfer import make_source
from overt.imageio.exports import NbdExport
from overt.node.hypervisor.libvirt_snapshots import disk_chains, snapshot_xml
from overt.node.storage import iscsi_domain
from overt.protocol.commands import DiskOverlay
from overt.protocol.storage import IscsiLunRef
from overt.protocol.vm import DiskFormat

__all__ = ["nfs_domain", "storage_lab"]  # the lab tests' fixtures, for the scenario
ARGS_ENV = "OVERT_BENCH_STORAGE_OPS_ARGS"
FIGURES_ENV = "OVERT_BENCH_STORAGE_OPS_FIGURES"
STEPS = {"Copying disk": "copy step",  # the steps of a job that are the node's part
         "Taking a snapshot of the disks": "snapshot step",
         "Merging a volume of disk": "merge step"}
RUN_MIB = 8  # data is written in runs of 8 MiB, a hole of the same size after each


def _on_node1(storage_lab: StorageLab, argv: list[str], timeout: float = 1800) -> str:
    done = subprocess.run(storage_lab.lab.exec_argv("node1", argv), capture_output=True,
                          text=True, check=False, timeout=timeout)
    assert done.returncode == 0, f"{argv[:3]}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout


def _writes(data_mib: int, size_mib: int) -> list[str]:
    """qemu-io commands writing `data_mib` in 8 MiB runs spread over the disk."""
    runs = max(1, data_mib // RUN_MIB)
    step = max(RUN_MIB, (size_mib // runs) // RUN_MIB * RUN_MIB)
    return [f"write -P 0x5a {i * step}M {RUN_MIB}M" for i in range(runs)
            if i * step + RUN_MIB <= size_mib]


def _nfs_url(storage_lab: StorageLab, domain_id: str, disk_id: str, volume: str) -> str:
    return f"nfs://{storage_lab.nfs_address}/export/{domain_id}/images/{disk_id}/{volume}"


def _step_times(jobs: Any, before: set[str], label: str, times: dict[str, list[float]]
                ) -> None:
    """The node's part of the jobs started since `before`, as their steps say."""
    for job in (j for j in jobs.list() if j.id not in before):
        ended = wait_until(lambda j=job: (g := jobs.job_service(j.id).get()).status
                           != types.JobStatus.STARTED and g, 60, "the job to end")
        assert ended.status == types.JobStatus.FINISHED, ended.status
        for step in jobs.job_service(job.id).steps_service().list():
            for said, key in STEPS.items():
                if step.description.startswith(said) and step.end_time:
                    times.setdefault(f"{key} {label}", []).append(
                        (step.end_time - step.start_time).total_seconds())


def _median(rows: list[float]) -> float:
    return statistics.median(rows) if rows else float("nan")


def _alternate(runs: int, api: Callable[[], None], raw: Callable[[], None]) -> None:
    for run in range(runs):
        for step in ((api, raw) if run % 2 == 0 else (raw, api)):
            step()


def _copies(storage_lab: StorageLab, nfs: NfsDomain, iscsi_id: str, size_mib: int,
            data_mib: int, runs: int) -> dict[str, list[float]]:
    site = storage_lab.first
    conn = site.connect()
    times: dict[str, list[float]] = {"copy api": [], "copy qemu-img": []}
    try:
        system = conn.system_service()
        disks = system.disks_service()
        disk = disks.add(types.Disk(name="bench-copy-src", format=types.DiskFormat.COW,
                                    provisioned_size=size_mib * MIB, sparse=True,
                                    storage_domains=[types.StorageDomain(id=nfs.id)]))
        wait_until(lambda: disks.disk_service(disk.id).get().status == types.DiskStatus.OK,
                   120, "the source disk to be created")
        [volume] = _nfs_volumes(storage_lab, nfs.id, disk.id)
        source = _nfs_url(storage_lab, nfs.id, disk.id, volume)
        writes = _writes(data_mib, size_mib)
        _on_node1(storage_lab, ["qemu-io", "-f", "qcow2",
                                *[a for w in writes for a in ("-c", w)], source])
        lun = IscsiLunRef(portal=f"{storage_lab.nfs_address}:3260",
                          target=storage_lab.lab.topology.iscsi_target(), lun=1)
        extents: list[tuple[str, int, int]] = []
        copies_made: list[str] = []
        iscsi_sd = system.storage_domains_service().storage_domain_service(iscsi_id)
        free = iscsi_sd.get().available
        jobs = system.jobs_service()

        def through_the_api() -> None:
            before = {j.id for j in jobs.list()}
            name = f"bench-copy-{uuid.uuid4().hex[:8]}"
            start = time.monotonic()
            disks.disk_service(disk.id).copy(storage_domain=types.StorageDomain(id=iscsi_id),
                                             disk=types.Disk(name=name))
            copied = wait_until(lambda: (found := disks.list(search=f"name={name}"))
                                and found[0].status == types.DiskStatus.OK and found[0],
                                1800, "the copy to be ok", every=0.1)
            times["copy api"].append(time.monotonic() - start)
            _step_times(jobs, before, "api", times)
            copies_made.append(copied.id)
            [extent] = _iscsi_chain(storage_lab, copied.image_id)
            extents.append(extent)

        def with_qemu_img() -> None:
            """Into the extent of the newest copy (reserved while the copy is)."""
            _vol, offset, size = extents[-1]
            target = iscsi_domain.image_json(iscsi_domain.window(lun, offset, size,
                                                                 DiskFormat.QCOW2))
            with tempfile.TemporaryDirectory(prefix="overt-bench-copy-", dir="/var/tmp") as scratch:
                empty = Path(scratch) / "empty.qcow2"
                subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(empty),
                                str(size_mib * MIB)], check=True)
                header = -(-empty.stat().st_size // 512) * 512
                start = time.monotonic()
                # a fresh qcow2 header on the extent (as the agent lays it out), then the copy
                _on_node1(storage_lab, [
                    "qemu-img", "convert", "-q", "-n", "-f", "raw", "-O", "raw", str(empty),
                    iscsi_domain.image_json(iscsi_domain.window(lun, offset, header))])
                _on_node1(storage_lab, ["qemu-img", "convert", "-q", "-n", "-O", "qcow2",
                                        source, target])
                times["copy qemu-img"].append(time.monotonic() - start)
            if len(times["copy qemu-img"]) == 1:  # the copy is the source, once checked
                _on_node1(storage_lab, ["qemu-img", "compare", "-q", source, target])

        def drop_copies() -> None:
            for copy_id in copies_made:
                disks.disk_service(copy_id).remove()
            for copy_id in copies_made:
                wait_until(lambda c=copy_id: all(d.id != c for d in disks.list()), 300,
                           "the copy to go")
            copies_made.clear()
            wait_until(lambda: iscsi_sd.get().available >= free, 300, "the extent to be free")

        # One copy at a time: the lab's LUN (2 GiB) holds one 1 GiB qcow2 extent.
        for run in range(runs):
            if run % 2 == 0 or not extents:
                drop_copies()
                through_the_api()
                with_qemu_img()
            else:
                with_qemu_img()  # into the previous run's extent
                drop_copies()
                through_the_api()
        drop_copies()
        disks.disk_service(disk.id).remove()
    finally:
        conn.close()
    return times


def _own_cpu() -> float:
    """CPU seconds of this process and its reaped children (the upload client's qemu-nbd)."""
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu_of(pid: int | None) -> float:
    """CPU seconds a live process has used so far (0 when there is none)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pid_of(text: str) -> int | None:
    """The process whose command line holds `text` (a transfer's own socket name)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if text.encode() in (entry / "cmdline").read_bytes():
                    return int(entry.name)
    return None


def _daemon_pid(storage_lab: StorageLab, url: str) -> int | None:
    """node1's imageio daemon: what listens on the transfer URL's port in its namespace."""
    port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]
    listening = _on_node1(storage_lab, ["ss", "-Hltnp", f"sport = :{port}"])
    found = re.search(r"pid=(\d+)", listening)
    return int(found.group(1)) if found else None


def _uploads(storage_lab: StorageLab, nfs: NfsDomain, iscsi_id: str, size_mib: int,
             data_mib: int, runs: int, workers: int) -> dict[str, list[float]]:
    """The SDK's upload flow at node1's imageio against `qemu-img convert -n` on node1,
    each into a new qcow2 disk of the domain (made through the API, not timed)."""
    site = storage_lab.first
    ca = str(site.managed.ca_file)
    conn = site.connect()
    times: dict[str, list[float]] = {f"upload {path} {kind}": [] for kind in ("nfs", "iscsi")
                                     for path in ("api", "qemu-img")}
    lun = IscsiLunRef(portal=f"{storage_lab.nfs_address}:3260",
                      target=storage_lab.lab.topology.iscsi_target(), lun=1)
    try:
        system = conn.system_service()
        disks, transfers = system.disks_service(), system.image_transfers_service()
        node1 = site.host_of(conn, "node1")
        iscsi_sd = system.storage_domains_service().storage_domain_service(iscsi_id)
        free = iscsi_sd.get().available

        def new_disk(domain_id: str) -> str:
            disk = disks.add(types.Disk(name=f"bench-up-{uuid.uuid4().hex[:8]}",
                                        format=types.DiskFormat.COW,
                                        provisioned_size=size_mib * MIB, sparse=True,
                                        storage_domains=[types.StorageDomain(id=domain_id)]))
            wait_until(lambda: disks.disk_service(disk.id).get().status
                       == types.DiskStatus.OK, 120, "the disk to be created")
            return str(disk.id)

        def volume_of(kind: str, disk_id: str) -> str:
            """The disk's volume as QEMU on node1 opens it (the agent's URL or options)."""
            if kind == "nfs":
                [volume] = _nfs_volumes(storage_lab, nfs.id, disk_id)
                return _nfs_url(storage_lab, nfs.id, disk_id, volume)
            [(_vol, offset, size)] = _iscsi_chain(
                storage_lab, disks.disk_service(disk_id).get().image_id)
            return iscsi_domain.image_json(iscsi_domain.window(lun, offset, size,
                                                               DiskFormat.QCOW2))

        def dropped(disk_id: str) -> None:
            disks.disk_service(disk_id).remove()
            wait_until(lambda: all(d.id != disk_id for d in disks.list()), 300,
                       "the disk to go")
            wait_until(lambda: iscsi_sd.get().available >= free, 300, "the extent to be free")

        def checked(kind: str, path: str, target: str) -> None:
            if len(times[f"upload {path} {kind}"]) == 1:  # the first of each: the source
                _on_node1(storage_lab, ["qemu-img", "compare", "-q", str(source), target])

        def through_the_api(kind: str, domain_id: str) -> None:
            disk_id = new_disk(domain_id)
            start = time.monotonic()
            transfer = transfers.add(types.ImageTransfer(
                disk=types.Disk(id=disk_id), direction=types.ImageTransferDirection.UPLOAD,
                format=types.DiskFormat.RAW, host=types.Host(id=node1.id)))
            added = time.monotonic()
            daemon = _cpu_of(_daemon_pid(storage_lab, transfer.transfer_url))
            mine = _own_cpu()
            client.upload(str(source), transfer.transfer_url, ca, max_workers=workers)
            sent = time.monotonic()
            cpu = {"client": _own_cpu() - mine,
                   "daemon": _cpu_of(_daemon_pid(storage_lab, transfer.transfer_url)) - daemon,
                   "qemu-nbd": _cpu_of(_pid_of(f"{transfer.id}.sock"))}
            service = transfers.image_transfer_service(transfer.id)
            service.finalize()
            wait_until(lambda: service.get().phase == types.ImageTransferPhase.FINISHED_SUCCESS,
                       600, "the upload to finish", every=0.05)
            end = time.monotonic()
            times[f"upload api {kind}"].append(end - start)
            for part, took in (("add", added - start), ("data", sent - added),
                               ("finalize", end - sent)):
                times.setdefault(f"upload api {kind} {part}", []).append(took)
            for part, took in cpu.items():
                times.setdefault(f"upload api {kind} cpu {part}", []).append(took)
            wait_until(lambda: disks.disk_service(disk_id).get().status
                       == types.DiskStatus.OK, 60, "the disk to be unlocked")
            checked(kind, "api", volume_of(kind, disk_id))
            dropped(disk_id)

        def with_qemu_img(kind: str, domain_id: str) -> None:
            disk_id = new_disk(domain_id)
            target = volume_of(kind, disk_id)
            start, cpu = time.monotonic(), _children_cpu()
            _on_node1(storage_lab, ["qemu-img", "convert", "-q", "-n", "-f", "qcow2", "-O",
                                    "qcow2", "-t", "writeback", str(source), target])
            times[f"upload qemu-img {kind}"].append(time.monotonic() - start)
            times.setdefault(f"upload qemu-img {kind} cpu", []).append(_children_cpu() - cpu)
            checked(kind, "qemu-img", target)
            dropped(disk_id)
            # the same into a new disk through a qemu-nbd with the transfer's flags: the
            # cost of that hop alone, without imageio
            disk_id = new_disk(domain_id)
            socket = Path(tmp) / f"nbd-{disk_id}.sock"
            nbd = NbdExport(volume_of(kind, disk_id), "qcow2", socket, read_only=False)
            argv = [a for a in nbd.argv(direct=False) if a != "--persistent"]
            _on_node1(storage_lab, [*argv[:1], "--fork", *argv[1:]])
            start = time.monotonic()
            _on_node1(storage_lab, ["qemu-img", "convert", "-q", "-n", "-f", "qcow2", "-O",
                                    "raw", str(source), f"nbd+unix:///?socket={socket}"])
            times.setdefault(f"upload qemu-nbd {kind}", []).append(time.monotonic() - start)
            dropped(disk_id)

        with tempfile.TemporaryDirectory(prefix="overt-bench-upload-", dir="/var/tmp") as tmp:
            Path(tmp).chmod(0o755)
            source = Path(tmp) / "source.qcow2"
            make_source(source, size_mib, data_mib)
            for kind, domain_id in (("nfs", nfs.id), ("iscsi", iscsi_id)):
                _alternate(runs, lambda k=kind, d=domain_id: through_the_api(k, d),
                           lambda k=kind, d=domain_id: with_qemu_img(k, d))
    finally:
        conn.close()
    return times


def _outside_overt(xml: str, copy_id: str) -> str:
    """The same domain under another name and UUID, without Overt's metadata."""
    xml = re.sub(r"<uuid>[^<]+</uuid>", f"<uuid>{copy_id}</uuid>", xml)
    xml = re.sub(r"<name>[^<]+</name>", "<name>bench-snap-virsh</name>", xml, count=1)
    return re.sub(r"<metadata>.*?</metadata>", "", xml, flags=re.S)


def _snapshots(storage_lab: StorageLab, nfs: NfsDomain, iscsi_id: str | None, size_mib: int,
               data_mib: int, iscsi_mib: int, runs: int) -> dict[str, list[float]]:
    site, lab = storage_lab.first, storage_lab.lab
    uri = lab.hypervisor("node1").uri
    conn = site.connect()
    times: dict[str, list[float]] = {f"{step} {path}": [] for step in (
        "snapshot", "write", "merge") for path in ("api", "virsh", "api iscsi")}
    copy_id = str(uuid.uuid4())
    writes = _writes(data_mib, size_mib)
    try:
        system = conn.system_service()
        disks, vms = system.disks_service(), system.vms_service()
        node1 = site.host_of(conn, "node1")
        made: dict[str, tuple[str, str]] = {}  # VM name: (VM id, disk id)
        domains = {"bench-snap": nfs.id, "bench-snap-copy": nfs.id}
        if iscsi_id is not None:
            domains["bench-snap-iscsi"] = iscsi_id
        for name, domain_id in domains.items():
            size = (iscsi_mib if domain_id == iscsi_id else size_mib) * MIB
            disk = disks.add(types.Disk(name=f"{name}-data", format=types.DiskFormat.COW,
                                        provisioned_size=size, sparse=True,
                                        storage_domains=[types.StorageDomain(id=domain_id)]))
            wait_until(lambda d=disk: disks.disk_service(d.id).get().status
                       == types.DiskStatus.OK, 120, "the data disk to be created")
            vm = vms.add(types.Vm(name=name, cluster=types.Cluster(name="Default"),
                                  template=types.Template(name="Blank"), memory=128 * MIB,
                                  placement_policy=types.VmPlacementPolicy(
                                      hosts=[types.Host(id=node1.id)])))
            # SCSI: HMP's qemu-io finds a scsi-hd's drive by its qdev id
            vms.vm_service(vm.id).disk_attachments_service().add(types.DiskAttachment(
                disk=types.Disk(id=disk.id), interface=types.DiskInterface.VIRTIO_SCSI,
                active=True))
            vms.vm_service(vm.id).start()
            made[name] = (vm.id, disk.id)
        for vm_id, _disk in made.values():
            wait_until(lambda v=vm_id: vms.vm_service(v).get().status == types.VmStatus.UP,
                       180, "the VMs to be up on node1")

        # The second VM's domain as Overt ran it becomes the copy outside Overt.
        copy_vm, copy_disk = made["bench-snap-copy"]
        xml = _domain_xml(lab, "node1", copy_vm)
        vms.vm_service(copy_vm).stop()
        wait_until(lambda: vms.vm_service(copy_vm).get().status == types.VmStatus.DOWN, 120,
                   "the copy's VM down in Overt")
        virt = libvirt.open(uri)
        virt.createXML(_outside_overt(xml, copy_id), 0)
        virt.close()
        [(device, [base_name])] = disk_chains(_domain_xml(lab, "node1", copy_id)).items()

        jobs = system.jobs_service()

        def through_the_api(name: str = "bench-snap", label: str = "api",
                            writes: list[str] = writes) -> None:
            vm_id, disk_id = made[name]
            vm_service = vms.vm_service(vm_id)
            snaps = vm_service.snapshots_service()
            before = {j.id for j in jobs.list()}
            start = time.monotonic()
            live = snaps.add(types.Snapshot(description="bench", persist_memorystate=False))
            wait_until(lambda: snaps.snapshot_service(live.id).get().snapshot_status
                       == types.SnapshotStatus.OK, 600, "the snapshot to be taken", every=0.05)
            times[f"snapshot {label}"].append(time.monotonic() - start)
            start = time.monotonic()
            for command in writes:
                _guest_io(lab, vm_id, disk_id, command)
            times[f"write {label}"].append(time.monotonic() - start)
            start = time.monotonic()
            snaps.snapshot_service(live.id).remove()
            wait_until(lambda: all(s.id != live.id for s in snaps.list()), 1800,
                       "the snapshot to be merged away live", every=0.05)
            times[f"merge {label}"].append(time.monotonic() - start)
            assert vm_service.get().status == types.VmStatus.UP
            _step_times(jobs, before, label, times)

        def virsh(*argv: str) -> None:
            done = subprocess.run(["virsh", "-c", uri, *argv], capture_output=True, text=True,
                                  check=False, timeout=1800)
            assert done.returncode == 0, done.stdout + done.stderr

        def with_virsh() -> None:
            overlay = f"{base_name.rpartition('/')[0]}/{uuid.uuid4()}"
            live_xml = _domain_xml(lab, "node1", copy_id)
            with tempfile.NamedTemporaryFile("w", suffix=".xml") as snap_xml:
                snap_xml.write(snapshot_xml(live_xml, [DiskOverlay(
                    active=base_name, overlay=overlay, reuse=True)]))
                snap_xml.flush()
                start = time.monotonic()
                _on_node1(storage_lab, [
                    "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                    f"nfs://{storage_lab.nfs_address}{base_name}",
                    f"nfs://{storage_lab.nfs_address}{overlay}", str(size_mib * MIB)])
                virsh("snapshot-create", "bench-snap-virsh", "--xmlfile", snap_xml.name,
                      "--disk-only", "--no-metadata", "--reuse-external", "--atomic")
                times["snapshot virsh"].append(time.monotonic() - start)
            start = time.monotonic()
            for command in writes:
                _guest_io(lab, copy_id, copy_disk, command)
            times["write virsh"].append(time.monotonic() - start)
            start = time.monotonic()
            virsh("blockcommit", "bench-snap-virsh", device, "--active", "--pivot")
            times["merge virsh"].append(time.monotonic() - start)
            assert f"{overlay}'" not in _domain_xml(lab, "node1", copy_id)
            (storage_lab.export_dir / overlay[overlay.index(nfs.id):]).unlink()

        try:
            _alternate(runs, through_the_api, with_virsh)
            if iscsi_id is not None:  # the API alone: see the module's docstring
                for _run in range(runs):
                    through_the_api("bench-snap-iscsi", "api iscsi",
                                    _writes(data_mib * iscsi_mib // size_mib, iscsi_mib))
        finally:
            virt = libvirt.open(uri)
            with contextlib.suppress(libvirt.libvirtError):
                virt.lookupByUUIDString(copy_id).destroy()
            virt.close()
        for name, (vm_id, _disk) in made.items():
            if name != "bench-snap-copy":
                vms.vm_service(vm_id).stop()
        for vm_id, _disk in made.values():
            wait_until(lambda v=vm_id: vms.vm_service(v).get().status == types.VmStatus.DOWN,
                       120, "the VMs down")
            vms.vm_service(vm_id).remove()
    finally:
        conn.close()
    return times


# ovirt_imageio.client leaves its local helper's unix socket to the garbage collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_storage_ops_figures(storage_lab: StorageLab, nfs_domain: NfsDomain) -> None:
    """The scenario, run by pytest for the lab's fixtures (see `main`)."""
    args = json.loads(os.environ[ARGS_ENV])
    iscsi_id = _lab_iscsi_domain(storage_lab.first)
    results: dict[str, list[float]] = {}
    if "copy" in args["parts"]:
        results |= _copies(storage_lab, nfs_domain, iscsi_id, args["size_mib"],
                           args["data_mib"], args["runs"])
    if "upload" in args["parts"]:
        results |= _uploads(storage_lab, nfs_domain, iscsi_id, args["size_mib"],
                            args["data_mib"], args["runs"], args["upload_workers"])
    if "snapshot" in args["parts"]:
        results |= _snapshots(storage_lab, nfs_domain,
                              iscsi_id if "iscsi" in args["parts"] else None,
                              args["size_mib"], args["data_mib"], args["iscsi_mib"],
                              args["runs"])
    print(f"figures: {json.dumps(results)}")  # kept in the output should the run fail later
    Path(os.environ[FIGURES_ENV]).write_text(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--data-mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--iscsi-size-mib", type=int, default=512,
                        help="the iSCSI snapshot's disk (data in proportion): the lab's LUN "
                        "is 2 GiB, a 1 GiB disk and its overlay do not both fit")
    parser.add_argument("--upload-workers", type=int, default=4,
                        help="the upload client's connections (ovirt_imageio's default: 4)")
    parser.add_argument("--parts", default="copy,upload,snapshot,iscsi",
                        help="comma-separated: copy, upload, snapshot (NFS), iscsi (snapshots of "
                        "an iSCSI disk too)")
    args = parser.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="overt-bench-storage-") as scratch:
        figures = Path(scratch) / "figures.json"
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "tests.conftest",
             "-p", "no:cacheprovider", "-s", __file__],
            env={**os.environ, FIGURES_ENV: str(figures), ARGS_ENV: json.dumps({
                "size_mib": args.size_mib, "data_mib": args.data_mib, "runs": args.runs,
                "iscsi_mib": args.iscsi_size_mib, "upload_workers": args.upload_workers,
                "parts": args.parts.split(",")})},
            check=False, capture_output=True, text=True)
        if done.returncode != 0 or not figures.exists():
            sys.exit(f"the lab scenario failed:\n{done.stdout[-5000:]}\n{done.stderr[-2000:]}")
        results = json.loads(figures.read_text())
    print(f"shared storage, {args.size_mib} MiB qcow2 disk, {args.data_mib} MiB of data, "
          f"{args.runs} runs each (load average {load[0]:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end; iSCSI snapshots: {args.iscsi_size_mib} MiB "
          "disk), medians (min-max):")
    paths = ("api", "qemu-img", "virsh", "api iscsi")
    order = [f"{step} {path}" for step in ("copy", "copy step", "snapshot", "snapshot step",
                                           "write", "merge", "merge step") for path in paths]
    order[8:8] = [f"upload {path} {kind}{part}" for kind in ("nfs", "iscsi")
                  for path, part in (("api", ""), ("api", " add"), ("api", " data"),
                                     ("api", " finalize"), ("api", " cpu client"),
                                     ("api", " cpu daemon"), ("api", " cpu qemu-nbd"),
                                     ("qemu-img", ""), ("qemu-img", " cpu"),
                                     ("qemu-nbd", ""))]
    for label, rows in sorted(results.items(), key=lambda kv: (
            order.index(kv[0]) if kv[0] in order else -1)):
        if not rows:
            continue
        spread = f"{min(rows):.2f}-{max(rows):.2f}"
        print(f"  {label:24} {_median(rows):8.2f} s  ({spread})")
    for kind in ("nfs", "iscsi"):
        api, raw = results.get(f"upload api {kind}"), results.get(f"upload qemu-img {kind}")
        if api and raw:
            print(f"  upload {kind}: {args.data_mib / _median(api):.0f} MiB/s of data through "
                  f"imageio, {args.data_mib / _median(raw):.0f} MiB/s with qemu-img; ratio "
                  f"(convert time / upload time) {_median(raw) / _median(api):.2f}")


if __name__ == "__main__":
    main()
