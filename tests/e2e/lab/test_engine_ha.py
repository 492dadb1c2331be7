"""The engine deployed for high availability loses any one machine and carries on.

PostgreSQL under Patroni (3 members, etcd), a 3-broker RabbitMQ cluster with quorum
queues, two of each engine part behind HAProxy (docs/engine-ha.md), a simulated fleet,
and VMs started through the official SDK while, in turn, the database's primary, a
broker, an api, a worker and a monitor are killed outright. Every accepted job ends,
every event the nodes sent is applied, the API answers again within 30 s."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from tests.conftest import require_root
from tests.support.demo import wait_until
from tests.support.engine_ha import HaLab, ha_lab
from tests.support.managed import event_positions

pytestmark = [pytest.mark.lab, pytest.mark.pg, pytest.mark.amqp, pytest.mark.slow]
MIB = 2**20
NODES = 2
API_BACK_S = 30


@pytest.fixture(scope="module")
def ha() -> Iterator[HaLab]:
    require_root()
    with ha_lab() as deployment:
        deployment.fleet(NODES)
        conn = deployment.connect()
        try:
            hosts = conn.system_service().hosts_service()

            def all_up() -> bool:
                listed = hosts.list()
                for host in listed:
                    if host.status == types.HostStatus.PENDING_APPROVAL:
                        hosts.host_service(host.id).approve()
                return sum(h.status == types.HostStatus.UP for h in listed) == NODES
            wait_until(all_up, 120, "the simulated nodes to be up", every=0.5)
        finally:
            conn.close()
        yield deployment


@dataclass
class Submitter:
    """Adds and starts VMs through the SDK, one after the other, and remembers what the
    API accepted; a refusal or a connection lost while the engine fails over is retried
    (it was not accepted)."""

    lab: HaLab
    accepted: list[str] = field(default_factory=list)  # VM ids whose start was accepted
    refused: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        number = 0
        conn: sdk.Connection | None = None
        while not self.stop.is_set():
            try:
                conn = conn or self.lab.connect(timeout=10)
                vms = conn.system_service().vms_service()
                vm = vms.add(types.Vm(name=f"ha-{number}", cluster=types.Cluster(name="Default"),
                                      template=types.Template(name="Blank"), memory=64 * MIB))
                number += 1
                vms.vm_service(vm.id).start()
                self.accepted.append(vm.id)
            except Exception as exc:
                self.refused += 1
                print(f"engine HA: a VM start was not accepted: {exc}")
                _close(conn)
                conn = None
                number += 1
            self.stop.wait(0.5)
        _close(conn)


def _close(conn: sdk.Connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()


def _kill_and_time(lab: HaLab, machine: str) -> float:
    """Kill `machine`, then the seconds until the API answers a listing again."""
    lab.kill_machine(machine)
    since = time.monotonic()

    def lists() -> bool:
        try:
            conn = lab.connect(timeout=5)
            try:
                conn.system_service().vms_service().list(max=1)
                return True
            finally:
                conn.close()
        except Exception:
            return False
    wait_until(lists, API_BACK_S, f"the API to answer after {machine} was killed", every=0.2)
    return round(time.monotonic() - since, 1)


def _primary(lab: HaLab) -> str:
    primary = lab.primary()
    assert primary is not None
    return primary


KILLS: list[tuple[str, Callable[[HaLab], str]]] = [
    ("PostgreSQL primary", _primary),
    ("RabbitMQ broker", lambda _lab: "mq1"),
    ("api", lambda _lab: "api1"),
    ("worker", lambda _lab: "worker1"),
    ("monitor", lambda _lab: "monitor1"),
]


def test_the_engine_s_queues_are_replicated_on_every_broker(ha: HaLab) -> None:
    queues = ha.queues()
    assert {q["name"] for q in queues} >= {"overt.stats", "overt.dead", "overt.events.p00"}
    assert all(q["type"] == "quorum" and len(q["members"]) == 3 for q in queues), queues


def test_killing_any_one_machine_loses_no_job_and_no_event(ha: HaLab) -> None:
    submitter = Submitter(ha)
    thread = threading.Thread(target=submitter.run, daemon=True)
    thread.start()
    failover: dict[str, float] = {}
    try:
        wait_until(lambda: len(submitter.accepted) >= 2, 60, "VM starts to be accepted")
        for what, machine_of in KILLS:
            machine = machine_of(ha)
            failover[what] = _kill_and_time(ha, machine)
            print(f"engine HA: killed the {what} ({machine}): API answered again in "
                  f"{failover[what]} s")
            after = len(submitter.accepted)
            wait_until(lambda a=after: len(submitter.accepted) >= a + 2, 60,
                       f"VM starts to be accepted again after the {what} was killed")
    finally:
        submitter.stop.set()
        thread.join(60)
    conn = ha.connect(timeout=30)
    try:
        vms = conn.system_service().vms_service()
        jobs = conn.system_service().jobs_service()

        def all_up() -> bool:
            status = {vm.id: vm.status for vm in vms.list()}
            return all(status.get(vm_id) == types.VmStatus.UP for vm_id in submitter.accepted)
        wait_until(all_up, 120, "every accepted VM start to have its VM up")

        def launches() -> list[types.Job]:
            return [j for j in jobs.list() if j.description.startswith("Launching VM ha-")]
        wait_until(lambda: all(j.status != types.JobStatus.STARTED for j in launches()), 60,
                   "every VM start job to end")
        ended = launches()
        assert len(ended) >= len(submitter.accepted)
        assert [j.description for j in ended if j.status != types.JobStatus.FINISHED] == []
    finally:
        conn.close()
    # Every event the nodes sent was applied, once: positions match the nodes' own.
    for process in ha.processes.pop("fleet", []):
        process.terminate()
        process.wait(30)
    sent = {host: (node["boot_id"], node["sent"]) for host, node in
            json.loads((ha.base / "fleet.status.json").read_text()).items()}
    wait_until(lambda: all(event_positions(ha.db_url)[h] == s for h, s in sent.items()), 60,
               "every event the nodes sent to be applied")
    print("engine HA failover (s):", failover)
    assert all(seconds <= API_BACK_S for seconds in failover.values())
    # The engine told each failure in words, without tracebacks (a database or broker
    # away is expected, not an internal error).
    for part in ("api1", "api2", "worker1", "worker2", "monitor1", "monitor2"):
        assert "Traceback" not in ha.log(part).read_text(errors="replace"), part
