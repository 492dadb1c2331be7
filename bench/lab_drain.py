"""Maintenance of a lab node running ten real guests: `deactivate` to `maintenance`.

The lab of `tests/e2e/lab/test_live_migration.py` (two nodes, the guests' disks on the
lab's NFS domain, the engine fully managed over RabbitMQ): `--vms` test guests (128 MiB,
TCG) booted on node1, then node1's `deactivate` through the SDK, timed until the engine
shows node1 in `maintenance` and node2's libvirtd runs every guest. Beside the wall time,
QEMU's own figures of each migration (the migration jobs' last steps: total and
downtime): the drain's wall time against the longest and the sum of QEMU's totals says
what the engine adds and how far the migrations overlapped. Then `activate` and the
guests drain back the other way, `--runs` times in all (node1 -> node2, node2 -> node1,
...).
Needs root and the lab (`OVERT_TEST_LAB_PREFIX`, `OVERT_TEST_LAB_BLOCK` as for the tests).
Usage: .venv/bin/python -m bench.lab_drain [--vms 10] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ovirtsdk4.types as types
from tests.e2e.lab.test_live_migration import NODES, _runs_on, storage_lab
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

__all__ = ["nfs_domain", "storage_lab"]  # the lab tests' fixtures, for the scenario
VMS_ENV, RUNS_ENV = "OVERT_BENCH_DRAIN_VMS", "OVERT_BENCH_DRAIN_RUNS"
FIGURES_ENV = "OVERT_BENCH_DRAIN_FIGURES"


def test_drain_figures(storage_lab: StorageLab, nfs_domain: NfsDomain,
                       guest_image: GuestImage) -> None:
    """The scenario, run by pytest for the lab's fixtures (see `main`)."""
    count, runs = int(os.environ.get(VMS_ENV, "10")), int(os.environ.get(RUNS_ENV, "2"))
    lab, site = storage_lab.lab, storage_lab.first
    names = [f"bench-drain-{i}" for i in range(count)]
    for name in names:
        _new_vm(site, name, _boot_disk(storage_lab, site, nfs_domain.id, guest_image))
    conn = site.connect()
    results: list[dict[str, float]] = []
    try:
        system = conn.system_service()
        vms, hosts_service = system.vms_service(), system.hosts_service()
        hosts = {node: site.host_of(conn, node) for node in NODES}
        services = [vms.vm_service(vms.list(search=f"name={name}")[0].id) for name in names]
        for service in services:
            service.update(types.Vm(placement_policy=types.VmPlacementPolicy(
                hosts=[types.Host(id=hosts["node1"].id)])))
            log = CONSOLE_LOG_DIR / f"{service.get().id}.log"
            log.unlink(missing_ok=True)
            service.start()
        for service in services:
            vm_id = service.get().id
            wait_until(lambda v=vm_id: (log := CONSOLE_LOG_DIR / f"{v}.log").exists()
                       and BOOT_MARKER in log.read_text(errors="replace"), 600,
                       f"guest {vm_id} to boot")
            service.update(types.Vm(placement_policy=types.VmPlacementPolicy(
                affinity=types.VmAffinity.MIGRATABLE, hosts=[])))
        jobs = system.jobs_service()
        for run in range(runs):
            source, to = NODES[run % 2], NODES[(run + 1) % 2]
            host = hosts_service.host_service(hosts[source].id)
            before = {j.id for j in jobs.list()}
            began = time.monotonic()
            host.deactivate()
            wait_until(lambda h=host: h.get().status == types.HostStatus.MAINTENANCE, 900,
                       f"{source} in maintenance", every=0.1)
            wall = time.monotonic() - began
            for service in services:
                assert _runs_on(lab, service.get().id, running_only=True) == [to]
            totals, downtimes = [], []
            for job in jobs.list():
                if job.id in before or not job.description.startswith("Migrating VM"):
                    continue
                ended = wait_until(lambda j=job: (g := jobs.job_service(j.id).get()).status
                                   != types.JobStatus.STARTED and g, 60, "the job to end")
                assert ended.status == types.JobStatus.FINISHED, ended.status
                said = jobs.job_service(job.id).steps_service().list()[-1].description
                found = re.search(r"total ([\d.]+) s, downtime (\d+) ms", said)
                assert found, said
                totals.append(float(found.group(1)))
                downtimes.append(int(found.group(2)))
            assert len(totals) == count, totals
            results.append({"wall_s": wall, "qemu_total_s_max": max(totals),
                            "qemu_total_s_sum": sum(totals),
                            "downtime_ms_median": statistics.median(downtimes),
                            "downtime_ms_max": max(downtimes)})
            host.activate()
            wait_until(lambda h=host: h.get().status == types.HostStatus.UP, 120,
                       f"{source} up again")
        for service in services:
            service.stop()
        for service in services:
            wait_until(lambda s=service: s.get().status == types.VmStatus.DOWN, 180,
                       "the VM down")
            service.remove()
    finally:
        conn.close()
    Path(os.environ[FIGURES_ENV]).write_text(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vms", type=int, default=10)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="overt-bench-drain-") as scratch:
        figures = Path(scratch) / "figures.json"
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "tests.conftest",
             "-p", "no:cacheprovider", "-s", __file__],
            env={**os.environ, FIGURES_ENV: str(figures), VMS_ENV: str(args.vms),
                 RUNS_ENV: str(args.runs)},
            check=False, capture_output=True, text=True)
        if done.returncode != 0 or not figures.exists():
            sys.exit(f"the lab scenario failed:\n{done.stdout[-5000:]}\n{done.stderr[-2000:]}")
        results = json.loads(figures.read_text())
    print(f"drain of a lab node running {args.vms} guests of 128 MiB (TCG), {args.runs} runs "
          f"(load average {load[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end):")
    for run, row in enumerate(results, 1):
        print(f"  run {run}: deactivate -> maintenance {row['wall_s']:.1f} s; QEMU's "
              f"migrations: longest total {row['qemu_total_s_max']:.1f} s, sum of totals "
              f"{row['qemu_total_s_sum']:.1f} s, downtime median "
              f"{row['downtime_ms_median']:.0f} ms (max {row['downtime_ms_max']:.0f})")


if __name__ == "__main__":
    main()
