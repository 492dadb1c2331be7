"""The broker goes away under a running engine and its nodes: nothing is lost or done twice.

These tests stop and start a private RabbitMQ node of their own (own name, ports and
data), never the machine's broker."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import ovirtsdk4.types as types
import pytest

from overt.system.daemons import ensure_rabbitmq, stop_rabbitmq
from tests.conftest import require_root
from tests.support.broker import Broker, private_broker
from tests.support.demo import wait_until
from tests.support.managed import ManagedSite, event_positions

pytestmark = [pytest.mark.amqp, pytest.mark.slow]
MIB = 2**20


@pytest.fixture(scope="module")
def private_rabbitmq() -> Iterator[Broker]:
    """A RabbitMQ node for this module alone, that its tests may stop and start."""
    require_root()
    with private_broker() as broker:
        yield broker


@pytest.fixture
def site(private_rabbitmq: Broker) -> Iterator[ManagedSite]:
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-broker-faults-"))
    running = ManagedSite(base, f"sqlite:///{base}/engine.db", private_rabbitmq.engine_url_now(),
                          private_rabbitmq.admin_url,
                          management_port=private_rabbitmq.node.management_port)
    yield running
    ensure_rabbitmq(private_rabbitmq.node)
    running.stop_all()
    running.print_logs()
    shutil.rmtree(base, ignore_errors=True)


def test_a_broker_restart_during_a_vm_start(site: ManagedSite, private_rabbitmq: Broker) -> None:
    """The start job completes, agents and engine reconnect, the engine resyncs, and every
    event is applied once: none lost, none twice."""
    site.engine("engine")
    site.wait_for_api()
    site.fleet("fleet", 2, heartbeat_interval=1, stats_interval=2, start_delay=6,
               announce_interval=0.5)
    conn = site.connect()
    try:
        site.approve_all(conn, 2)
        vms = conn.system_service().vms_service()
        vm = vms.add(types.Vm(name="through-restart", cluster=types.Cluster(name="Default"),
                              template=types.Template(name="Blank"), memory=64 * MIB))
        vms.vm_service(vm.id).start()
        jobs = conn.system_service().jobs_service()
        job = next(j for j in jobs.list() if j.description == "Launching VM through-restart")
        wait_until(lambda: any(s.description.startswith("Starting VM") for s in
                               jobs.job_service(job.id).steps_service().list()), 30,
                   "the node to be asked to start the VM")
        stop_rabbitmq(private_rabbitmq.node)  # the node is still starting the VM
        time.sleep(2)
        ensure_rabbitmq(private_rabbitmq.node)
        final = wait_until(lambda: (j := jobs.job_service(job.id).get()).status !=
                           types.JobStatus.STARTED and j, 120, "the start job to end")
        assert final.status == types.JobStatus.FINISHED
        wait_until(lambda: vms.vm_service(vm.id).get().status == types.VmStatus.UP, 60,
                   "the VM to be up")
        hosts = conn.system_service().hosts_service()
        wait_until(lambda: all(h.status == types.HostStatus.UP for h in hosts.list()), 60,
                   "the hosts to be up again")
        started = [e for e in conn.system_service().events_service().list()
                   if e.description.startswith("VM through-restart started on host")]
        assert len(started) == 1
        # Once its events link is back (after up to 10 s of backoff) the engine resyncs.
        wait_until(lambda: "resynchronised" in site.text("engine").split(
            "lost the connection to the broker")[-1], 60, "the engine to resync the nodes")
        site.stop("fleet")
        sent = site.fleet_status("fleet")
        wait_until(lambda: all(event_positions(site.db)[host] == (node["boot_id"], node["sent"])
                               for host, node in sent.items()), 60,
                   "every event the nodes sent to be applied")
    finally:
        conn.close()
    engine, fleet = site.text("engine"), site.text("fleet")
    assert "lost the connection to the broker" in engine
    assert "lost the connection to the broker" in fleet
    assert "answering from the first run" in fleet  # the start came back, ran once
    assert "resynchronised" in engine.split("lost the connection to the broker")[-1]
    assert "were lost" not in engine and "waited" not in engine
    assert "Traceback" not in engine + fleet


def test_an_engine_started_while_the_broker_is_down_says_so_and_connects_later(
        site: ManagedSite, private_rabbitmq: Broker) -> None:
    stop_rabbitmq(private_rabbitmq.node)
    site.engine("engine")
    site.wait_for_api()  # the API serves meanwhile
    expected = (f"cannot use the broker at amqp://{site.bus.split('//')[1].split(':')[0]}:***@"
                f"127.0.0.1:{private_rabbitmq.node.amqp_port}")
    wait_until(lambda: expected in site.text("engine"), 30, "the engine to say why")
    assert "(is RabbitMQ running?)" in site.text("engine")
    ensure_rabbitmq(private_rabbitmq.node)
    wait_until(lambda: "failed attempt(s)" in site.text("engine"), 60,
               "the engine to connect once the broker is back")
    site.fleet("fleet", 1, announce_interval=0.5, heartbeat_interval=1)
    conn = site.connect()
    try:
        site.approve_all(conn, 1)
    finally:
        conn.close()
    log = site.text("engine")
    assert "Traceback" not in log
    assert private_rabbitmq.admin_password not in log
