"""Heartbeat watch: a silent host is connecting for its grace period (longer for more VMs,
the cluster's to set), then non responsive with a recovery job; never for the monitor's
own delay."""

from __future__ import annotations

import datetime as dt
import time
import uuid

from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import AuditEvent, Cluster, Host, Job, Vm, utcnow
from overt.engine.model.fencing_policy import FencingPolicy
from overt.engine.model.status import HostStatus, VmStatus
from overt.engine.monitor.service import Monitor
from overt.engine.nodes import NodeClient
from tests.support.no_nodes import NoNodes

TIMEOUT_S = 10


async def _silent_host_with_a_vm(db: Database, name: str = "quiet"
                                 ) -> tuple[uuid.UUID, uuid.UUID]:
    """A host `up` whose last heartbeat was applied a minute ago, running one VM."""
    async with db.transaction() as session:
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert cluster is not None
        host = Host(id=uuid.uuid4(), name=name, address="192.0.2.1", cluster_id=cluster.id,
                    status=HostStatus.UP.value, host_uuid=uuid.uuid4(),
                    last_heartbeat_at=utcnow() - dt.timedelta(seconds=60))
        session.add(host)
        await session.flush()
        vm = Vm(id=uuid.uuid4(), name=f"on-{name}", cluster_id=cluster.id,
                template_id=BLANK_TEMPLATE_ID, memory_mib=64, status=VmStatus.UP.value,
                host_id=host.id)
        session.add(vm)
    return host.id, vm.id


async def _statuses(db: Database, host_id: uuid.UUID, vm_id: uuid.UUID) -> tuple[str, str]:
    async with db.transaction() as session:
        host = await session.get(Host, host_id)
        vm = await session.get(Vm, vm_id)
        assert host is not None and vm is not None
        return host.status, vm.status


def _monitor(db: Database) -> Monitor:
    return Monitor(db, NodeClient(NoNodes()), heartbeat_timeout_s=TIMEOUT_S)


async def _grace_began(db: Database, host_id: uuid.UUID, seconds_ago: float) -> None:
    async with db.transaction() as session:
        host = await session.get(Host, host_id)
        assert host is not None and host.unreachable_since is not None
        host.unreachable_since = utcnow() - dt.timedelta(seconds=seconds_ago)


async def _recoveries(db: Database, host_id: uuid.UUID) -> int:
    async with db.transaction() as session:
        return len((await session.execute(select(Job.id).where(
            Job.action == "host.recover", Job.host_id == host_id))).all())


async def test_a_silent_host_is_connecting_then_non_responsive_after_its_grace(
        db: Database) -> None:
    host_id, vm_id = await _silent_host_with_a_vm(db)
    monitor = _monitor(db)
    await monitor.check_heartbeats()
    # Connecting: its VMs are left as they are, nothing is submitted.
    assert await _statuses(db, host_id, vm_id) == (HostStatus.CONNECTING.value,
                                                   VmStatus.UP.value)
    assert await _recoveries(db, host_id) == 0
    # oVirt's grace: 60 s plus 0.5 s per running VM (one here): 60.5 s.
    await _grace_began(db, host_id, 60)
    await monitor.check_heartbeats()
    assert await _statuses(db, host_id, vm_id) == (HostStatus.CONNECTING.value,
                                                   VmStatus.UP.value)
    await _grace_began(db, host_id, 61)
    await monitor.check_heartbeats()
    assert await _statuses(db, host_id, vm_id) == (HostStatus.NON_RESPONSIVE.value,
                                                   VmStatus.UNKNOWN.value)
    assert await _recoveries(db, host_id) == 1
    await monitor.check_heartbeats()  # judged once: no second recovery
    assert await _recoveries(db, host_id) == 1
    async with db.transaction() as session:
        said = [e.description for e in (await session.execute(select(AuditEvent).where(
            AuditEvent.host_id == host_id).order_by(AuditEvent.id))).scalars()]
    assert said == ["Host quiet is not responding; the engine keeps trying to reach it "
                    "during its grace period before judging it non responsive",
                    "Host quiet is not responding after its grace period of 60 s"]


async def test_the_grace_grows_with_the_vms_and_is_the_clusters(db: Database) -> None:
    host_id, vm_id = await _silent_host_with_a_vm(db)
    async with db.transaction() as session:
        host = await session.get(Host, host_id)
        cluster = await session.get(Cluster, host.cluster_id)  # type: ignore[union-attr]
        assert cluster is not None
        cluster.fencing_policy = FencingPolicy(grace_s=5, grace_per_vm_s=2).to_json()
        for n in range(3):  # four VMs in all: 5 + 4 * 2 = 13 s
            session.add(Vm(id=uuid.uuid4(), name=f"busy-{n}", cluster_id=cluster.id,
                           template_id=BLANK_TEMPLATE_ID, memory_mib=64,
                           status=VmStatus.UP.value, host_id=host_id))
    monitor = _monitor(db)
    await monitor.check_heartbeats()
    await _grace_began(db, host_id, 12)
    await monitor.check_heartbeats()
    assert (await _statuses(db, host_id, vm_id))[0] == HostStatus.CONNECTING.value
    await _grace_began(db, host_id, 14)
    await monitor.check_heartbeats()
    assert await _statuses(db, host_id, vm_id) == (HostStatus.NON_RESPONSIVE.value,
                                                   VmStatus.UNKNOWN.value)


async def test_a_host_connecting_after_activation_has_no_grace_and_no_recovery(
        db: Database) -> None:
    host_id, vm_id = await _silent_host_with_a_vm(db)
    async with db.transaction() as session:
        host = await session.get(Host, host_id)
        assert host is not None
        host.status = HostStatus.CONNECTING  # as activation leaves it: never heard since
    await _monitor(db).check_heartbeats()
    assert (await _statuses(db, host_id, vm_id))[0] == HostStatus.NON_RESPONSIVE.value
    assert await _recoveries(db, host_id) == 0


async def test_a_host_lost_while_it_drains_is_recovered_at_once(db: Database) -> None:
    host_id, vm_id = await _silent_host_with_a_vm(db)
    async with db.transaction() as session:
        host = await session.get(Host, host_id)
        assert host is not None
        host.status = HostStatus.PREPARING_FOR_MAINTENANCE
    await _monitor(db).check_heartbeats()
    assert await _statuses(db, host_id, vm_id) == (HostStatus.NON_RESPONSIVE.value,
                                                   VmStatus.UNKNOWN.value)
    assert await _recoveries(db, host_id) == 1


async def test_a_monitor_behind_the_nodes_events_does_not_blame_the_hosts(
        db: Database) -> None:
    host_id, vm_id = await _silent_host_with_a_vm(db)
    monitor = _monitor(db)
    # The event it applied last was made by its node 20 s ago: the monitor is behind.
    monitor.report.event("applied", time.time() - 2 * TIMEOUT_S)
    await monitor.check_heartbeats()
    assert await _statuses(db, host_id, vm_id) == (HostStatus.UP.value, VmStatus.UP.value)
    # Behind as well while it only works through old events another run applied.
    redelivered = _monitor(db)
    redelivered.report.event("duplicate", time.time() - 2 * TIMEOUT_S)
    await redelivered.check_heartbeats()
    assert await _statuses(db, host_id, vm_id) == (HostStatus.UP.value, VmStatus.UP.value)
    # Caught up (its last event is fresh): a host still silent is judged again.
    monitor.report.event("applied", time.time())
    await monitor.check_heartbeats()
    assert await _statuses(db, host_id, vm_id) == (HostStatus.CONNECTING.value,
                                                   VmStatus.UP.value)


async def test_the_engines_grace_serves_clusters_that_set_none_of_their_own(
        db: Database) -> None:
    host_id, vm_id = await _silent_host_with_a_vm(db)
    engine_wide = FencingPolicy(grace_s=5.0, grace_per_vm_s=0.0)
    monitor = Monitor(db, NodeClient(NoNodes()), heartbeat_timeout_s=TIMEOUT_S,
                      fencing_defaults=engine_wide)
    await monitor.check_heartbeats()
    await _grace_began(db, host_id, 6)  # past the engine's 5 s, far from oVirt's 60.5 s
    await monitor.check_heartbeats()
    assert await _statuses(db, host_id, vm_id) == (HostStatus.NON_RESPONSIVE.value,
                                                   VmStatus.UNKNOWN.value)

    # A cluster that sets its own grace keeps it, whatever the engine's.
    host_id, vm_id = await _silent_host_with_a_vm(db, "calm")
    async with db.transaction() as session:
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert cluster is not None
        cluster.fencing_policy = {"skip_if_sd_active": True, "grace_s": 30.0}
    await monitor.check_heartbeats()
    await _grace_began(db, host_id, 6)
    await monitor.check_heartbeats()
    assert (await _statuses(db, host_id, vm_id))[0] == HostStatus.CONNECTING.value
