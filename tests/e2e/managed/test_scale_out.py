"""Scale-out in fully managed mode: several workers and monitors share the load through the
broker and one PostgreSQL, and losing one of each (kill -9) mid-way loses nothing."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import ovirtsdk4.types as types
import pytest

from tests.conftest import require_root
from tests.support.broker import Broker
from tests.support.demo import wait_until
from tests.support.managed import ManagedSite, event_positions

pytestmark = [pytest.mark.amqp, pytest.mark.pg, pytest.mark.slow]
NODES, VMS = 8, 48
MIB = 2**20


@pytest.fixture
def site(fresh_postgres_url: str, rabbitmq: Broker) -> Iterator[ManagedSite]:
    require_root()
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-scale-out-"))
    running = ManagedSite(base, fresh_postgres_url, rabbitmq.engine_url_now(), rabbitmq.admin_url)
    yield running
    running.stop_all()
    running.print_logs()
    shutil.rmtree(base, ignore_errors=True)


def _applied(log: str) -> int:
    return sum(int(n) for n in re.findall(r"in the last \d+ s: (\d+) events applied", log))


def test_workers_and_monitors_share_the_load_and_losing_one_of_each_loses_nothing(
        site: ManagedSite) -> None:
    site.engine("api", "api")
    site.wait_for_api()
    for name, part in (("worker1", "worker"), ("worker2", "worker"), ("monitor1", "monitor"),
                       ("monitor2", "monitor")):
        site.engine(name, part)
    site.fleet("fleet", NODES, heartbeat_interval=1, stats_interval=2, start_delay=1.5,
               announce_interval=0.5)
    conn = site.connect()
    try:
        site.approve_all(conn, NODES)
        vms = conn.system_service().vms_service()
        ids = [vms.add(types.Vm(name=f"scale-{n:02d}", cluster=types.Cluster(name="Default"),
                                template=types.Template(name="Blank"), memory=64 * MIB)).id
               for n in range(VMS)]
        for vm_id in ids:
            vms.vm_service(vm_id).start()
        jobs = conn.system_service().jobs_service()

        def finished() -> int:
            return sum(j.status == types.JobStatus.FINISHED for j in jobs.list()
                       if j.description.startswith("Launching VM scale-"))
        wait_until(lambda: finished() >= 8, 60, "the first VMs to start")
        # worker1 has finished jobs of its own (killed before any, it would show none
        # although it shared the load)
        wait_until(lambda: "finished" in site.text("worker1"), 30, "worker1 to finish a job")
        site.kill("worker1")  # with jobs in hand: their leases lapse, worker2 takes them
        # monitor1 has reported events it applied (its report comes every 2 s: killed
        # before its first one, it would show none although it shared the load)
        wait_until(lambda: _applied(site.text("monitor1")) > 0, 30,
                   "monitor1 to report events applied")
        site.kill("monitor1")  # with events in hand: the broker gives them to monitor2
        wait_until(lambda: finished() == VMS, 120, "every start job to finish", every=1)
        wait_until(lambda: all(vms.vm_service(i).get().status == types.VmStatus.UP
                               for i in ids), 60, "every VM to be up")
        assert not [j for j in jobs.list() if j.status == types.JobStatus.FAILED]
        placed = {vms.vm_service(i).get().host.id for i in ids}
        assert len(placed) > NODES // 2  # the scheduler spread them

        site.stop("fleet")  # sends what it has, then writes what the broker confirmed
        sent = site.fleet_status("fleet")
        assert len(sent) == NODES

        def applied_all() -> bool:
            positions = event_positions(site.db)
            return all(positions[host] == (node["boot_id"], node["sent"])
                       for host, node in sent.items())
        wait_until(applied_all, 60, "every event sent to be applied")
    finally:
        conn.close()
    for monitor in ("monitor1", "monitor2"):
        log = site.text(monitor)
        assert "waited" not in log and "were lost" not in log, log[-3000:]
    assert _applied(site.text("monitor1")) > 0 and _applied(site.text("monitor2")) > 0
    assert "finished" in site.text("worker1") and "finished" in site.text("worker2")
    assert "Traceback" not in "".join(site.text(name) for name in
                                      ("api", "worker2", "monitor2", "fleet"))
