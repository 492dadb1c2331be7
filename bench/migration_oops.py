"""Hunting the guest oops around live migration (issue 16): the test guest migrates
node1 <-> node2 between the lab's libvirtds many times, as Overt's agent migrates it, and
its serial console is searched for a kernel oops after every migration.

No engine: the lab (two nodes and the storage host, built with the lab API under
`OVERT_TEST_LAB_PREFIX` / `OVERT_TEST_LAB_BLOCK`), the guest's disk a qcow2 copy of the
test guest on the lab's NFS export, its domain XML from Overt's own `domain_xml` (128 MiB,
1 vCPU, VNC + VGA, virtio memballoon, disk `cache='none'` over QEMU's NFS client, serial
console appended to a file), and `virDomainMigrate3` from this process with the flags and
parameters of `migration_flags` / `migration_params` (what the node agent passes), the
max downtime set once the job runs, as the agent does.

A variant changes one thing; by default the first migration's settings of
`tests/e2e/lab/test_live_migration.py`: live, auto-converge, 200 Mbps, max downtime 450 ms.

    OVERT_TEST_LAB_PREFIX=ovmo OVERT_TEST_LAB_BLOCK=10.233.0.0/16 \\
      PYTHONPATH=$PWD/src:$PWD /work/main/.venv/bin/python -m bench.migration_oops \\
      --variant test --migrations 30 [--guests 2] [--keep-lab]

Variants: see VARIANTS. Each guest is booted afresh, migrated `--migrations` times
(waiting `--settle` seconds between migrations, its counter must advance), and destroyed;
an oops ("BUG:", "Oops", "general protection", "Kernel panic", a counter that stops) ends
that guest's series (its console log is kept as NAME-oops-TIME.log). The lab stays up with
`--keep-lab`; `--down` only tears it down. Figures: docs/migration.md (the lab's acceptance
test); `bench/migration_memcheck.py` measures the lost writes themselves, far more often
than they show as an oops.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import libvirt

from overt.lab.guest import BOOT_MARKER, COUNTER_PREFIX, build_guest_image
from overt.lab.lab import Lab
from overt.lab.topology import LabSpec, Net, Topology
from overt.node.hypervisor.domain_xml import OvertMetadata, domain_xml, with_display_address
from overt.node.hypervisor.libvirt_migration import migration_flags, migration_params
from overt.protocol.host import VirtMode
from overt.protocol.migration import MigrationPolicy
from overt.protocol.vm import CpuTopology, DiskSpec, NfsSource, VmSpec

NODES = ("node1", "node2")
LOG_DIR = Path("/var/log/overt/console")
OOPS_RE = re.compile(r"BUG: |Oops|general protection|Kernel panic|Call Trace|RIP: ")


def _quiet(_ctx: object, _err: object) -> None:
    """libvirt prints every error on stderr by default; the exceptions say it."""


libvirt.registerErrorHandler(_quiet, None)


@dataclass(frozen=True)
class Variant:
    policy: MigrationPolicy
    max_downtime_ms: int | None = None
    vcpus: int = 1
    memballoon: bool = True
    graphics: bool = True
    memory_mib: int = 128
    busy: bool = False  # the guest rewrites 32 MiB in a loop ("busy" typed on its keyboard)
    live: bool = True  # False: libvirt pauses the guest for the whole migration


TEST_POLICY = MigrationPolicy(auto_converge=True, bandwidth_mbps=200)
VARIANTS = {
    # the failing test's first migration: auto-converge, 200 Mbps, max downtime 450 ms
    "test": Variant(TEST_POLICY, 450),
    # the test's second migration: QEMU's defaults (auto-converge still on, no bandwidth)
    "second": Variant(MigrationPolicy(auto_converge=True), None),
    "plain": Variant(MigrationPolicy(), None),  # VIR_MIGRATE_LIVE alone, QEMU's defaults
    "no-autoconverge": Variant(MigrationPolicy(bandwidth_mbps=200), 450),
    "no-bandwidth": Variant(MigrationPolicy(auto_converge=True), 450),
    "no-downtime": Variant(TEST_POLICY, None),
    "compressed": Variant(MigrationPolicy(auto_converge=True, compressed=True,
                                          bandwidth_mbps=200), 450),
    "no-balloon": Variant(TEST_POLICY, 450, memballoon=False),
    "no-graphics": Variant(TEST_POLICY, 450, graphics=False),
    "2cpu": Variant(TEST_POLICY, 450, vcpus=2),
    "busy": Variant(TEST_POLICY, 450, busy=True),
    "busy-plain": Variant(MigrationPolicy(), None, busy=True),
    # not live: the guest is paused from the start (no writes while memory is copied)
    "paused": Variant(TEST_POLICY, 450, live=False),
    "busy-paused": Variant(TEST_POLICY, 450, live=False, busy=True),
}


@dataclass
class Result:
    migrations: int = 0
    oopses: int = 0
    failures: list[str] = field(default_factory=list)
    downtimes: list[int] = field(default_factory=list)


def _lab() -> Lab:
    spec = LabSpec(nodes=2, prefix=os.environ.get("OVERT_TEST_LAB_PREFIX", "ovmo"),
                   address_block=os.environ.get("OVERT_TEST_LAB_BLOCK", "10.233.0.0/16"))
    return Lab(Topology(spec))


def _address(lab: Lab, node: str) -> str:
    return str(lab.topology.host(node).address(Net.MANAGEMENT))


def _edit(xml: str, variant: Variant) -> str:
    if not variant.memballoon:
        xml = re.sub(r"<memballoon model=\"virtio\"\s*/>", "<memballoon model=\"none\"/>", xml)
    return xml


def _domain(lab: Lab, name: str, variant: Variant, disk_path: str, log: Path) -> str:
    spec = VmSpec(
        id=uuid.uuid4(), name=name, memory_mib=variant.memory_mib,
        cpu=CpuTopology(sockets=variant.vcpus),
        disks=(DiskSpec(id=uuid.uuid4(), bootable=True, source=NfsSource(
            server=str(lab.topology.storage.address(Net.STORAGE)), path=disk_path)),),
        serial_log=str(log), graphics=None if not variant.graphics else VmSpec.model_fields[
            "graphics"].default)
    return _edit(domain_xml(spec, VirtMode.QEMU, OvertMetadata(spec.id, 1)), variant)


def _type_busy(dom: libvirt.virDomain) -> None:
    keys = {"b": 48, "u": 22, "s": 31, "y": 21, "\n": 28}
    for char in "busy\n":
        dom.sendKey(libvirt.VIR_KEYCODE_SET_LINUX, 50, [keys[char]], 1, 0)


def _last_count(text: str) -> int:
    found = re.findall(re.escape(COUNTER_PREFIX) + r"(\d+)", text)
    return int(found[-1]) if found else -1


def _wait(pred: Callable[[], bool], timeout: float, what: str, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(every)


def _set_downtime_when_running(dom: libvirt.virDomain, ms: int, stop: threading.Event) -> None:
    """As the agent's watcher: the max downtime once the job runs (QEMU takes it only then)."""
    while not stop.wait(0.1):
        with contextlib.suppress(libvirt.libvirtError):
            if dom.jobStats(0).get("type") == libvirt.VIR_DOMAIN_JOB_UNBOUNDED:
                dom.migrateSetMaxDowntime(ms, 0)
                return


def run_guest(lab: Lab, variant: Variant, index: int, migrations: int, settle: float,
              result: Result, lock: threading.Lock, tag: str) -> None:
    name = f"ovmo-{tag}-{index}"
    export = lab.topology.nfs_export_dir()
    image = build_guest_image()
    disk = export / f"{name}.qcow2"
    shutil.copyfile(image.qcow2_disk, disk)
    log = LOG_DIR / f"{name}.log"
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    conns = {node: libvirt.open(lab.hypervisor(node).uri) for node in NODES}
    here = 0
    dom = None
    try:
        xml = _domain(lab, name, variant, f"/export/{disk.name}", log)
        dom = conns[NODES[0]].createXML(xml, 0)
        _wait(lambda: log.exists() and BOOT_MARKER in log.read_text(errors="replace"), 120,
              f"{name} to boot")
        if variant.busy:
            def busy() -> bool:
                _type_busy(dom)
                return "overt-test-guest: busy" in log.read_text(errors="replace")
            _wait(busy, 60, "busy", every=2)
        time.sleep(settle)
        for _ in range(migrations):
            source, dest = NODES[here], NODES[1 - here]
            dom = conns[source].lookupByName(name)
            moved = with_display_address(dom.XMLDesc(
                libvirt.VIR_DOMAIN_XML_SECURE | libvirt.VIR_DOMAIN_XML_MIGRATABLE),
                _address(lab, dest))
            params = migration_params(variant.policy, migration_uri=f"tcp://{_address(lab, dest)}",
                                      destination_xml=moved)
            stop = threading.Event()
            watcher = None
            if variant.max_downtime_ms is not None:
                watcher = threading.Thread(target=_set_downtime_when_running,
                                           args=(dom, variant.max_downtime_ms, stop), daemon=True)
                watcher.start()
            before = _last_count(log.read_text(errors="replace"))
            try:
                flags = migration_flags(variant.policy, persistent=False)
                if not variant.live:
                    flags &= ~libvirt.VIR_MIGRATE_LIVE
                dom.migrate3(conns[dest], params, flags)
            finally:
                stop.set()
                if watcher is not None:
                    watcher.join()
            here = 1 - here
            dom = conns[dest].lookupByName(name)
            with contextlib.suppress(libvirt.libvirtError, KeyError):
                stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
                with lock:
                    result.downtimes.append(int(stats["downtime"]))
            time.sleep(settle)
            text = log.read_text(errors="replace")
            with lock:
                result.migrations += 1
                print(f"{name}: migration {result.migrations} {source}->{dest} done",
                      flush=True)
            oops = OOPS_RE.search(text)
            if oops or _last_count(text) <= before:
                with lock:
                    result.oopses += 1
                    tail = "\n".join(text[oops.start() if oops else -2000:].splitlines()[:30])
                    result.failures.append(f"{name} after migration {result.migrations} "
                                           f"({source}->{dest}):\n{tail}")
                keep = LOG_DIR / f"{name}-oops-{int(time.time())}.log"
                shutil.copyfile(log, keep)
                return
    except Exception as error:  # reported with the figures
        with lock:
            result.failures.append(f"{name}: {error!r}")
    finally:
        for conn in conns.values():
            with contextlib.suppress(libvirt.libvirtError):
                conn.lookupByName(name).destroy()
            conn.close()
        disk.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="test")
    parser.add_argument("--migrations", type=int, default=30, help="per guest")
    parser.add_argument("--guests", type=int, default=1, help="series in a row")
    parser.add_argument("--parallel", type=int, default=1, help="guests at once")
    parser.add_argument("--settle", type=float, default=1.5,
                        help="seconds between migrations (the counter must advance)")
    parser.add_argument("--keep-lab", action="store_true")
    parser.add_argument("--down", action="store_true", help="tear the lab down and exit")
    args = parser.parse_args()
    lab = _lab()
    if args.down:
        lab.down()
        return
    lab.up()
    variant = VARIANTS[args.variant]
    result, lock = Result(), threading.Lock()
    started = time.monotonic()
    try:
        for batch in range(0, args.guests, args.parallel):
            threads = [threading.Thread(target=run_guest, args=(
                lab, variant, i, args.migrations, args.settle, result, lock, args.variant))
                for i in range(batch, min(args.guests, batch + args.parallel))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        if not args.keep_lab:
            lab.down()
    downtimes = sorted(result.downtimes)
    print(json.dumps({
        "variant": args.variant, "oopses": result.oopses, "migrations": result.migrations,
        "downtime_ms_median": downtimes[len(downtimes) // 2] if downtimes else None,
        "seconds": round(time.monotonic() - started), "load": os.getloadavg()[0]}))
    for failure in result.failures:
        print(failure)


if __name__ == "__main__":
    main()
