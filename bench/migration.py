"""Live migration between two lab nodes: Overt's API against `virsh migrate --live`.

Where the nodes' QEMU loses guest writes in a live migration (before 9.0, without KVM:
docs/migration.md) the API migrates the guest paused for the copy; virsh then migrates
with the same flags (no `--live`), and a `virsh migrate --live` series is kept beside them
for reference.

The lab of `tests/e2e/lab/test_live_migration.py` (two nodes, the guest's disk on the lab's
NFS domain, the engine fully managed over RabbitMQ): a test guest (128 MiB, TCG) migrates
node1 -> node2 -> node1 ... `--runs` times through the API (`vms/{id}/migrate`), and beside
it a second guest, started by Overt and then run outside it as a copy of the very domain
Overt ran (same XML and memory, its own disk; another name and UUID), migrates as often with
`virsh migrate --live` between the same nodes' libvirtd, over the same migration address,
with the same settings (auto-converge on, bandwidth and max downtime left to QEMU). The two
alternate migration by migration (and which goes first), so a load that changes during the
run weighs on both alike. Both idle, then busy: typing `busy` on the
guest's keyboard makes it rewrite 32 MiB of its memory over and over. Downtime and total
time are QEMU's own figures (the destination's completed job: through the API as the
migration's job reports them, its total rounded to 0.1 s); "wall" is the time from
the request until the VM runs on the destination (the API: until the engine shows it
up there; virsh: until the command returns).
Needs root and the lab (`OVERT_TEST_LAB_PREFIX`, `OVERT_TEST_LAB_BLOCK` as for the tests).
Usage: .venv/bin/python -m bench.migration [--runs 4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import libvirt
import ovirtsdk4.types as types
from tests.e2e.lab.test_live_migration import NODES, _address, storage_lab
from tests.e2e.lab.test_shared_storage import (
    CONSOLE_LOG_DIR,
    NfsDomain,
    StorageLab,
    _boot_disk,
    _new_vm,
    nfs_domain,
)
from tests.support.demo import wait_until

from overt.lab.guest import BOOT_MARKER, GuestImage
from overt.node.hypervisor.domain_xml import with_display_address

__all__ = ["nfs_domain", "storage_lab"]  # the lab tests' fixtures, for the scenario
RUNS_ENV = "OVERT_BENCH_MIGRATION_RUNS"
FIGURES_ENV = "OVERT_BENCH_MIGRATION_FIGURES"
KEYS = {"b": 48, "u": 22, "s": 31, "y": 21, "\n": 28}  # Linux key codes of "busy\n"


def _type_busy(dom: libvirt.virDomain) -> None:
    for char in "busy\n":
        dom.sendKey(libvirt.VIR_KEYCODE_SET_LINUX, 50, [KEYS[char]], 1, 0)


def _completed(uri: str, vm_id: str) -> tuple[int, int]:
    """QEMU's downtime and total time (ms) of the migration that just ended on `uri`."""
    conn = libvirt.open(uri)
    try:
        stats = conn.lookupByUUIDString(vm_id).jobStats(
            libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED | libvirt.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED)
        return int(stats["downtime"]), int(stats["time_elapsed"])
    finally:
        conn.close()


def _figures(rows: list[tuple[float, int, int]]) -> dict[str, float]:
    walls, downtimes, totals = zip(*rows, strict=True)
    return {"downtime_ms_median": statistics.median(downtimes),
            "downtime_ms_max": max(downtimes), "total_ms_median": statistics.median(totals),
            "wall_s_median": statistics.median(walls), "runs": len(rows)}


def _domain_outside_overt(xml: str, copy_id: str) -> str:
    """The same domain under another name and UUID, without Overt's metadata."""
    xml = re.sub(r"<uuid>[^<]+</uuid>", f"<uuid>{copy_id}</uuid>", xml)
    xml = re.sub(r"<name>[^<]+</name>", "<name>bench-migr-virsh</name>", xml, count=1)
    return re.sub(r"<metadata>.*?</metadata>", "", xml, flags=re.S)


def _busy(uri: str, vm_id: str, log: Path) -> None:
    conn = libvirt.open(uri)
    try:
        dom = conn.lookupByUUIDString(vm_id)
        deadline = time.monotonic() + 60
        while "overt-test-guest: busy" not in log.read_text(errors="replace"):
            assert time.monotonic() < deadline, "the guest never got busy"
            _type_busy(dom)
            time.sleep(2)
    finally:
        conn.close()


def test_migration_figures(storage_lab: StorageLab, nfs_domain: NfsDomain,
                           guest_image: GuestImage) -> None:
    """The scenario, run by pytest for the lab's fixtures (see `main`)."""
    runs = int(os.environ.get(RUNS_ENV, "4"))
    lab, site = storage_lab.lab, storage_lab.first
    uris = {node: lab.hypervisor(node).uri for node in NODES}
    names = ("bench-migr", "bench-migr-copy")
    for name in names:
        _new_vm(site, name, _boot_disk(storage_lab, site, nfs_domain.id, guest_image))
    conn = site.connect()
    results: dict[str, dict[str, float]] = {}
    copy_id = str(uuid.uuid4())
    try:
        vms = conn.system_service().vms_service()
        hosts = {node: site.host_of(conn, node) for node in NODES}
        services, logs = {}, {}
        for name in names:
            vm = vms.list(search=f"name={name}")[0]
            services[name] = vms.vm_service(vm.id)
            services[name].update(types.Vm(
                placement_policy=types.VmPlacementPolicy(hosts=[types.Host(id=hosts["node1"].id)]),
                migration=types.MigrationOptions(auto_converge=types.InheritableBoolean.TRUE)))
            logs[name] = CONSOLE_LOG_DIR / f"{vm.id}.log"
            logs[name].unlink(missing_ok=True)
            services[name].start()
        for name in names:
            wait_until(lambda n=name: logs[n].exists()
                       and BOOT_MARKER in logs[n].read_text(errors="replace"),
                       300, f"{name} to boot")
        service = services["bench-migr"]
        vm_id = service.get().id
        service.update(types.Vm(placement_policy=types.VmPlacementPolicy(
            affinity=types.VmAffinity.MIGRATABLE, hosts=[])))

        # The second guest's domain, as Overt ran it, becomes the copy outside Overt (same
        # XML, its own disk): both guests run side by side, so the API's and virsh's
        # migrations alternate under the same load.
        copy_service = services["bench-migr-copy"]
        node1 = libvirt.open(uris["node1"])
        xml = node1.lookupByUUIDString(copy_service.get().id).XMLDesc(
            libvirt.VIR_DOMAIN_XML_MIGRATABLE)
        copy_service.stop()
        wait_until(lambda: copy_service.get().status == types.VmStatus.DOWN, 120,
                   "the copy's VM down in Overt")
        copy_log = logs["bench-migr-copy"]
        copy_log.unlink(missing_ok=True)
        node1.createXML(_domain_outside_overt(xml, copy_id), 0)
        node1.close()
        wait_until(lambda: copy_log.exists()
                   and BOOT_MARKER in copy_log.read_text(errors="replace"), 300,
                   "the copy to boot")

        jobs = conn.system_service().jobs_service()

        api_live: list[bool] = []  # what the engine chose (paused where live loses writes)

        def through_the_api(to: str) -> tuple[float, int, int]:
            before = {j.id for j in jobs.list()}
            start = time.monotonic()
            service.migrate(host=types.Host(id=hosts[to].id))
            wait_until(lambda: (v := service.get()).status == types.VmStatus.UP
                       and v.host.id == hosts[to].id, 300, f"the VM up on {to}", every=0.05)
            wall = time.monotonic() - start
            [job] = [j for j in jobs.list() if j.id not in before
                     and j.description.startswith("Migrating VM")]
            ended = wait_until(lambda: (g := jobs.job_service(job.id).get()).status
                               != types.JobStatus.STARTED and g, 60, "the job to end")
            assert ended.status == types.JobStatus.FINISHED, ended.status
            said = jobs.job_service(job.id).steps_service().list()[-1].description
            found = re.search(r"total ([\d.]+) s, downtime (\d+) ms", said)
            assert found, said
            api_live.append(not said.endswith(", guest paused"))
            return wall, int(found.group(2)), round(float(found.group(1)) * 1000)

        def with_virsh(source: str, to: str, *, live: bool) -> tuple[float, int, int]:
            # its console listens on the destination's address, as Overt's agent does
            at = libvirt.open(uris[source])
            moved = with_display_address(at.lookupByUUIDString(copy_id).XMLDesc(
                libvirt.VIR_DOMAIN_XML_SECURE | libvirt.VIR_DOMAIN_XML_MIGRATABLE),
                _address(lab, to))
            at.close()
            with tempfile.NamedTemporaryFile("w", suffix=".xml") as dest_xml:
                dest_xml.write(moved)
                dest_xml.flush()
                start = time.monotonic()
                done = subprocess.run(
                    ["virsh", "-c", uris[source], "migrate",
                     *(["--live", "--auto-converge"] if live else []),
                     "--xml", dest_xml.name, "bench-migr-virsh", uris[to],
                     f"tcp://{_address(lab, to)}"],
                    capture_output=True, text=True, timeout=600, check=False)
                wall = time.monotonic() - start
            assert done.returncode == 0, done.stdout + done.stderr
            return (wall, *_completed(uris[to], copy_id))

        def series(label: str) -> None:
            """`runs` migrations each, alternating (and alternating which goes first), an
            even number so both guests end on node1."""
            api_rows, virsh_rows, live_rows = [], [], []
            for run in range(runs + (runs % 2)):
                source, to = NODES[run % 2], NODES[(run + 1) % 2]
                if run % 4 < 2:
                    api_rows.append(through_the_api(to))
                    virsh_rows.append(with_virsh(source, to, live=api_live[-1]))
                else:
                    virsh_rows.append(with_virsh(source, to, live=not api_live or api_live[-1]))
                    api_rows.append(through_the_api(to))
                if api_live[-1] is False:  # live migration, for reference (loses writes here)
                    live_rows.append(with_virsh(to, source, live=True))
                    live_rows.append(with_virsh(source, to, live=True))
            mode = "live" if all(api_live) else "paused"
            results[f"api {label} ({mode})"] = _figures(api_rows[:runs])
            results[f"virsh {label} ({mode}, the API's flags)"] = _figures(virsh_rows[:runs])
            if live_rows:
                results[f"virsh {label} (--live, reference)"] = _figures(live_rows[:runs])

        try:
            series("idle")
            _busy(uris["node1"], vm_id, logs["bench-migr"])
            _busy(uris["node1"], copy_id, copy_log)
            series("busy")
        finally:
            for uri in uris.values():
                with_conn = libvirt.open(uri)
                with contextlib.suppress(libvirt.libvirtError):
                    with_conn.lookupByUUIDString(copy_id).destroy()
                with_conn.close()
        service.stop()
        wait_until(lambda: service.get().status == types.VmStatus.DOWN, 120, "the VM down")
        for name in names:
            services[name].remove()
    finally:
        conn.close()
    Path(os.environ[FIGURES_ENV]).write_text(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=4)
    args = parser.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="overt-bench-migr-") as scratch:
        figures = Path(scratch) / "figures.json"
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "tests.conftest",
             "-p", "no:cacheprovider", "-s", __file__],
            env={**os.environ, FIGURES_ENV: str(figures), RUNS_ENV: str(args.runs)},
            check=False, capture_output=True, text=True)
        if done.returncode != 0 or not figures.exists():
            sys.exit(f"the lab scenario failed:\n{done.stdout[-5000:]}\n{done.stderr[-2000:]}")
        results = json.loads(figures.read_text())
    print(f"live migration node1 <-> node2, 128 MiB TCG guest, {args.runs} runs each "
          f"(load average {load[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end):")
    for label, row in results.items():
        print(f"  {label:40} downtime median {row['downtime_ms_median']:.0f} ms "
              f"(max {row['downtime_ms_max']:.0f}), total median "
              f"{row['total_ms_median']:.0f} ms, wall median {row['wall_s_median']:.2f} s")


if __name__ == "__main__":
    main()
