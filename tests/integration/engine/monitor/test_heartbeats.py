"""Heartbeat watch: silent hosts become non responsive, but not for the monitor's own delay."""

from __future__ import annotations

import datetime as dt
import time
import uuid

from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import Cluster, Host, Vm, utcnow
from overt.engine.model.status import HostStatus, VmStatus
from overt.engine.monitor.service import Monitor
from overt.engine.nodes import NodeClient
from tests.support.no_nodes import NoNodes

TIMEOUT_S = 10


async def _silent_host_with_a_vm(db: Database) -> tuple[uuid.UUID, uuid.UUID]:
    """A host `up` whose last heartbeat was applied a minute ago, running one VM."""
    async with db.transaction() as session:
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert cluster is not None
        host = Host(id=uuid.uuid4(), name="quiet", address="192.0.2.1", cluster_id=cluster.id,
                    status=HostStatus.UP.value, host_uuid=uuid.uuid4(),
                    last_heartbeat_at=utcnow() - dt.timedelta(seconds=60))
        session.add(host)
        await session.flush()
        vm = Vm(id=uuid.uuid4(), name="on-quiet", cluster_id=cluster.id,
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


async def test_a_silent_host_becomes_non_responsive_and_its_vms_unknown(db: Database) -> None:
    host_id, vm_id = await _silent_host_with_a_vm(db)
    await _monitor(db).check_heartbeats()
    assert await _statuses(db, host_id, vm_id) == (HostStatus.NON_RESPONSIVE.value,
                                                   VmStatus.UNKNOWN.value)


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
    assert await _statuses(db, host_id, vm_id) == (HostStatus.NON_RESPONSIVE.value,
                                                   VmStatus.UNKNOWN.value)
