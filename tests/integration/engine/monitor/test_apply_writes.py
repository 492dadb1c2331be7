"""What applying events writes, on SQLite and PostgreSQL: a heartbeat of a host that is up
moves only its position, timestamp and free memory; an event that changes nothing writes
nothing; a stats sample that repeats the stored values adds history without rewriting rows."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, func, select

from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import Cluster, Host, StatsSample, Vm, utcnow
from overt.engine.model.status import HostStatus, VmStatus
from overt.engine.monitor.apply import Gaps, Outcome, apply_events
from overt.engine.monitor.stats_writer import StatsWriter
from overt.protocol import EventEnvelope
from overt.protocol.events import Heartbeat, VmLifecycle
from overt.protocol.events import StatsSample as StatsEvent
from overt.protocol.host import HostStats, VmState, VmStats, VmStatusReport

BOOT = uuid.uuid4()
HEARD_BEFORE = utcnow() - dt.timedelta(seconds=30)


async def _host_up(db: Database) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """A host up at event 1 of its run, heard 30 s ago, running one VM: (host, node, VM)."""
    async with db.transaction() as session:
        cluster_id = (await session.execute(select(Cluster.id))).scalars().first()
        assert cluster_id is not None
        host = Host(id=uuid.uuid4(), name="busy", address="192.0.2.7", cluster_id=cluster_id,
                    status=HostStatus.UP.value, host_uuid=uuid.uuid4(), boot_id=BOOT,
                    last_seq=1, last_heartbeat_at=HEARD_BEFORE, free_memory_mib=1000,
                    memory_mib=4096)
        session.add(host)
        await session.flush()
        vm = Vm(id=uuid.uuid4(), name="runs-on-busy", cluster_id=cluster_id,
                template_id=BLANK_TEMPLATE_ID, memory_mib=64, status=VmStatus.UP.value,
                host_id=host.id)
        session.add(vm)
    assert host.host_uuid is not None
    return host.id, host.host_uuid, vm.id


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """The SQL statements sent to the database meanwhile."""
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(" ".join(statement.split()))

    event.listen(db.engine.sync_engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", note)


def _writes(sent: list[str]) -> list[str]:
    return [s for s in sent if s.split()[0].upper() in ("UPDATE", "INSERT", "DELETE")]


def _heartbeat(node: uuid.UUID, seq: int, free_mib: int) -> EventEnvelope:
    return EventEnvelope(host_uuid=node, boot_id=BOOT, seq=seq,
                         event=Heartbeat(vm_count=1, free_memory_mib=free_mib, uptime_s=9.0))


async def _apply(db: Database, *envelopes: EventEnvelope) -> list[object]:
    async with db.transaction() as session:
        return list(await apply_events(session, [(e, Gaps.WAIT) for e in envelopes]))


async def _host(db: Database, host_id: uuid.UUID) -> Host:
    async with db.transaction() as session:
        host = await session.get(Host, host_id)
        assert host is not None
        return host


async def test_a_heartbeat_moves_only_position_timestamp_and_free_memory(db: Database) -> None:
    host_id, node, _vm_id = await _host_up(db)
    with statements(db) as sent:
        assert await _apply(db, _heartbeat(node, 2, 1500), _heartbeat(node, 3, 1700)) == \
            [Outcome.APPLIED, Outcome.APPLIED]
    writes = _writes(sent)
    assert len(writes) == 1, writes  # the batch's heartbeats in one statement
    assert writes[0].startswith("UPDATE hosts SET")
    changed = writes[0].split(" SET ")[1].split(" WHERE ")[0].split(" FROM ")[0]
    assert sorted(part.split("=")[0].strip() for part in changed.split(",")) == \
        ["free_memory_mib", "last_heartbeat_at", "last_seq"]
    host = await _host(db, host_id)
    assert (host.status, host.last_seq, host.free_memory_mib, host.needs_resync) == \
        (HostStatus.UP.value, 3, 1700, False)
    assert host.last_heartbeat_at is not None and host.last_heartbeat_at > HEARD_BEFORE


async def test_a_duplicate_heartbeat_writes_nothing(db: Database) -> None:
    host_id, node, _vm_id = await _host_up(db)
    with statements(db) as sent:
        assert await _apply(db, _heartbeat(node, 1, 1500)) == [Outcome.DUPLICATE]
    assert _writes(sent) == []
    host = await _host(db, host_id)
    assert (host.last_seq, host.free_memory_mib, host.last_heartbeat_at) == \
        (1, 1000, HEARD_BEFORE)


async def test_a_lifecycle_event_that_changes_no_vm_writes_only_the_hosts_position(
        db: Database) -> None:
    host_id, node, vm_id = await _host_up(db)
    running = EventEnvelope(host_uuid=node, boot_id=BOOT, seq=2, event=VmLifecycle(
        vm=VmStatusReport(vm_id=vm_id, name="runs-on-busy", state=VmState.RUNNING)))
    with statements(db) as sent:
        assert await _apply(db, running) == [Outcome.APPLIED]
    writes = _writes(sent)
    assert [w.split(" SET ")[0] for w in writes] == ["UPDATE hosts"], writes
    assert (await _host(db, host_id)).last_seq == 2
    async with db.transaction() as session:
        vm = await session.get(Vm, vm_id)
        assert vm is not None and (vm.status, vm.host_id) == (VmStatus.UP.value, host_id)


def _stats(node: uuid.UUID, vm_id: uuid.UUID, cpu: float) -> EventEnvelope:
    return EventEnvelope(host_uuid=node, boot_id=BOOT, event=StatsEvent(
        interval_s=10.0,
        host=HostStats(cpu_percent=cpu, memory_total_mib=4096, memory_used_mib=2048,
                       memory_free_mib=2048),
        vms=(VmStats(vm_id=vm_id, name="runs-on-busy", cpu_percent=cpu, cpu_time_ns=1,
                     memory_mib=60, net_rx_bytes=5000, net_tx_bytes=700),)))


async def test_stats_are_written_and_a_repeated_sample_adds_history_only(db: Database) -> None:
    host_id, node, vm_id = await _host_up(db)
    writer = StatsWriter(db)
    writer.add(_stats(node, vm_id, 12.5))
    await writer.flush()
    async with db.transaction() as session:
        vm = await session.get(Vm, vm_id)
        host = await session.get(Host, host_id)
        assert vm is not None and host is not None
        assert (vm.cpu_percent, vm.memory_used_mib, vm.net_rx_bytes, vm.net_tx_bytes) == \
            (12.5, 60, 5000, 700)
        assert (host.cpu_percent, host.free_memory_mib, host.memory_mib) == (12.5, 2048, 4096)
        rows = (await session.execute(select(
            StatsSample.subject_type, StatsSample.cpu_percent, StatsSample.memory_total_mib,
            StatsSample.net_rx_bps, StatsSample.resolution_s).order_by(
                StatsSample.subject_type))).all()
        assert [tuple(row) for row in rows] == [("host", 12.5, 4096, 0.0, 0),
                                                ("vm", 12.5, 64, 500.0, 0)]
    writer.add(_stats(node, vm_id, 12.5))
    with statements(db) as sent:
        await writer.flush()
    assert [w.split()[:3] for w in _writes(sent)] == [["INSERT", "INTO", "stats_samples"]]
    async with db.transaction() as session:
        assert (await session.execute(select(func.count()).select_from(StatsSample))
                ).scalar_one() == 4
    assert writer.written == 2
