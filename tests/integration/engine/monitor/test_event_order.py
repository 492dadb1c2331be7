"""The database as the arbiter of event order, on SQLite and PostgreSQL.

Over the broker several monitors compete for a node's events (`Monitor.apply`,
which waits for a missing predecessor); over HTTPS the inbox keeps arrival order
(a gap means lost events: apply and resync). Both skip duplicates and late news
of an earlier agent run.
"""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest
from sqlalchemy import select

from overt.bus.base import NodeAddress
from overt.engine.db import migrate
from overt.engine.db.database import Database
from overt.engine.db.seed import seed
from overt.engine.db.tables import Cluster, Host, Vm
from overt.engine.model.status import HostStatus
from overt.engine.monitor import service
from overt.engine.monitor.apply import (
    ApplyLater,
    EventTooEarly,
    Gaps,
    HostBusy,
    Outcome,
    apply_event,
    apply_events,
)
from overt.engine.monitor.service import Monitor
from overt.engine.nodes import NodeClient
from overt.protocol import CommandEnvelope, EventEnvelope, Reply
from overt.protocol.boots import new_boot_id
from overt.protocol.events import Heartbeat, HostStateReport, StatsSample
from overt.protocol.host import HostState, HostStats
from tests.support.no_nodes import NoNodes


async def _host(db: Database, status: HostStatus = HostStatus.UP) -> uuid.UUID:
    host_uuid = uuid.uuid4()
    async with db.transaction() as session:
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert cluster is not None
        session.add(Host(id=uuid.uuid4(), name=f"h-{host_uuid.hex[:8]}", address="192.0.2.1",
                         cluster_id=cluster.id, status=status.value, host_uuid=host_uuid))
    return host_uuid


async def _position(db: Database, host_uuid: uuid.UUID) -> tuple[uuid.UUID | None, int, bool]:
    async with db.transaction() as session:
        host = (await session.execute(select(Host).where(Host.host_uuid == host_uuid))
                ).scalar_one()
        return host.boot_id, host.last_seq, host.needs_resync


def _state(host_uuid: uuid.UUID, boot: uuid.UUID, seq: int = 0) -> EventEnvelope:
    state = HostState(host_uuid=host_uuid, vms=(), free_memory_mib=1024, seq=seq, boot_id=boot)
    return EventEnvelope(host_uuid=host_uuid, boot_id=boot, seq=1,
                         event=HostStateReport(state=state))


def _beat(host_uuid: uuid.UUID, boot: uuid.UUID, seq: int) -> EventEnvelope:
    return EventEnvelope(host_uuid=host_uuid, boot_id=boot, seq=seq,
                         event=Heartbeat(vm_count=0, free_memory_mib=1000 + seq, uptime_s=seq))


async def _apply(db: Database, event: EventEnvelope, gaps: Gaps) -> Outcome:
    async with db.transaction() as session:
        return await apply_event(session, event, gaps=gaps)


async def test_waiting_sink_applies_in_order_skips_duplicates_and_refuses_early_events(
        db: Database) -> None:
    host = await _host(db)
    boot = new_boot_id()
    assert await _apply(db, _state(host, boot), Gaps.WAIT) is Outcome.APPLIED
    with pytest.raises(EventTooEarly):
        await _apply(db, _beat(host, boot, 3), Gaps.WAIT)
    assert await _apply(db, _beat(host, boot, 2), Gaps.WAIT) is Outcome.APPLIED
    assert await _apply(db, _beat(host, boot, 2), Gaps.WAIT) is Outcome.DUPLICATE
    assert await _apply(db, _beat(host, boot, 3), Gaps.WAIT) is Outcome.APPLIED
    assert await _position(db, host) == (boot, 3, False)


async def test_a_new_run_starts_with_its_first_event_and_late_news_of_the_old_one_is_stale(
        db: Database) -> None:
    host = await _host(db)
    old = new_boot_id()
    await _apply(db, _state(host, old), Gaps.WAIT)
    new = new_boot_id(started_at=(await _started(old)) + 5)
    with pytest.raises(EventTooEarly):  # the new run's first event is still on its way
        await _apply(db, _beat(host, new, 2), Gaps.WAIT)
    assert await _apply(db, _state(host, new), Gaps.WAIT) is Outcome.APPLIED
    assert await _apply(db, _beat(host, new, 2), Gaps.WAIT) is Outcome.APPLIED
    assert await _apply(db, _beat(host, old, 2), Gaps.WAIT) is Outcome.STALE
    assert await _apply(db, _state(host, old), Gaps.WAIT) is Outcome.STALE
    boot, seq, resync = await _position(db, host)
    assert (boot, seq) == (new, 2)
    assert resync  # a resync settles which run is the node's current one


async def _started(boot: uuid.UUID) -> float:
    return (boot.int >> 80) / 1000


async def test_the_inbox_applies_after_a_gap_and_resyncs(db: Database) -> None:
    host = await _host(db)
    boot = new_boot_id()
    await _apply(db, _state(host, boot), Gaps.RESYNC)
    assert await _apply(db, _beat(host, boot, 4), Gaps.RESYNC) is Outcome.APPLIED
    assert await _position(db, host) == (boot, 4, True)
    other = new_boot_id()
    assert await _apply(db, _beat(host, other, 7), Gaps.RESYNC) is Outcome.APPLIED
    assert await _position(db, host) == (other, 7, True)


async def test_competing_monitors_apply_every_event_once_in_order(db: Database) -> None:
    """Two monitors (each its own database pool) share a node's events at random; each
    takes its share in seq order and gives a refused event again, as the broker's lanes do."""
    host = await _host(db)
    boot, count = new_boot_id(), 40
    events = [_state(host, boot), *(_beat(host, boot, seq) for seq in range(2, count + 1))]
    shuffled = random.Random(7).sample(events, len(events))  # noqa: S311 - a test shuffle
    databases = [Database(db.url) for _ in range(2)]
    monitors = [Monitor(d, NodeClient(NoNodes()), heartbeat_timeout_s=30) for d in databases]
    refused = 0

    async def consume(monitor: Monitor, share: list[EventEnvelope]) -> None:
        nonlocal refused
        for event in share:
            while True:
                try:
                    await monitor.apply(event)
                    break
                except ApplyLater:  # too early, or its host held by the other monitor
                    refused += 1
                    await asyncio.sleep(0.005)

    try:
        await asyncio.gather(*(consume(monitor, sorted(shuffled[n::2], key=_seq))
                               for n, monitor in enumerate(monitors)))
    finally:
        for d in databases:
            await d.dispose()
    assert await _position(db, host) == (boot, count, False)
    assert refused > 0


def _seq(event: EventEnvelope) -> int:
    return event.seq or 0


async def test_an_event_whose_predecessor_never_comes_is_applied_after_a_while(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "EARLY_PATIENCE_S", 0.2)
    host = await _host(db)
    boot = new_boot_id()
    monitor = Monitor(db, NodeClient(NoNodes()), heartbeat_timeout_s=30)
    await monitor.apply(_state(host, boot))
    with pytest.raises(EventTooEarly):
        await monitor.apply(_beat(host, boot, 3))
    await asyncio.sleep(0.3)
    await monitor.apply(_beat(host, boot, 3))
    assert await _position(db, host) == (boot, 3, True)


async def test_stats_of_the_whole_fleet_are_written_in_one_go(db: Database) -> None:
    hosts = [await _host(db) for _ in range(3)]
    parked = await _host(db, HostStatus.MAINTENANCE)
    monitor = Monitor(db, NodeClient(NoNodes()), heartbeat_timeout_s=30)
    for n, host_uuid in enumerate([*hosts, parked]):
        sample = StatsSample(interval_s=15, host=HostStats(
            cpu_percent=10.0 + n, memory_total_mib=4096, memory_used_mib=1024,
            memory_free_mib=3072))
        await monitor.apply(EventEnvelope(host_uuid=host_uuid, boot_id=new_boot_id(),
                                          event=sample))
    await monitor.stats.flush()
    async with db.transaction() as session:
        cpu = dict((await session.execute(select(Host.host_uuid, Host.cpu_percent))).all())
        assert (await session.execute(select(Vm))).first() is None
    assert [cpu[h] for h in hosts] == [10.0, 11.0, 12.0]
    assert cpu[parked] == 0.0  # hosts in maintenance are not monitored
    assert monitor.stats.written == 3


class StateOf:
    """A transport whose nodes answer host.state with a report set by the test."""

    def __init__(self) -> None:
        self.state: HostState | None = None

    async def start(self, sink: object) -> None:
        return None

    async def call(self, node: NodeAddress, envelope: CommandEnvelope) -> Reply:
        assert self.state is not None
        return Reply.success(envelope.request_id, self.state)

    async def close(self) -> None:
        return None


async def _host_row(db: Database, host_uuid: uuid.UUID) -> Host:
    async with db.transaction() as session:
        return (await session.execute(select(Host).where(Host.host_uuid == host_uuid))
                ).scalar_one()


async def test_a_resync_takes_the_reports_position_unless_newer_events_were_applied(
        db: Database) -> None:
    host = await _host(db)
    nodes = StateOf()
    monitor = Monitor(db, NodeClient(nodes), heartbeat_timeout_s=30)
    boot = new_boot_id()
    for event in (_state(host, boot), _beat(host, boot, 2), _beat(host, boot, 3)):
        await monitor.apply(event)
    nodes.state = HostState(host_uuid=host, vms=(), free_memory_mib=1, seq=2, boot_id=boot)
    await monitor.resync_all()
    await monitor.resync(await _host_row(db, host))
    assert await _position(db, host) == (boot, 3, True)  # out of date: asked again
    later = new_boot_id(started_at=(await _started(boot)) + 1)
    nodes.state = HostState(host_uuid=host, vms=(), free_memory_mib=1, seq=5, boot_id=later)
    await monitor.resync(await _host_row(db, host))  # asked again, as the first said
    assert await _position(db, host) == (later, 5, False)
    # The new run's events up to the report are older than it: skipped.
    assert await _apply(db, _state(host, later), Gaps.WAIT) is Outcome.DUPLICATE
    assert await _apply(db, _beat(host, later, 6), Gaps.WAIT) is Outcome.APPLIED


async def test_events_of_many_nodes_handed_in_together_are_committed_together(
        db: Database) -> None:
    hosts = [await _host(db) for _ in range(20)]
    boots = {host: new_boot_id() for host in hosts}
    monitor = Monitor(db, NodeClient(NoNodes()), heartbeat_timeout_s=30)
    await asyncio.gather(*(monitor.apply(_state(host, boots[host])) for host in hosts))
    results = await asyncio.gather(
        *(monitor.apply(_beat(host, boots[host], 2)) for host in hosts[1:]),
        monitor.apply(_beat(hosts[0], boots[hosts[0]], 5)), return_exceptions=True)
    assert isinstance(results[-1], EventTooEarly)  # refused alone: the others are applied
    assert results[:-1] == [None] * 19
    assert await _position(db, hosts[1]) == (boots[hosts[1]], 2, False)
    assert await _position(db, hosts[0]) == (boots[hosts[0]], 1, False)
    assert monitor.batcher.batches <= 6  # not one transaction per event
    await monitor.batcher.close()


@pytest.mark.pg
async def test_a_batch_never_waits_behind_a_host_another_transaction_holds(
        fresh_postgres_url: str) -> None:
    migrate.upgrade(fresh_postgres_url)
    db = Database(fresh_postgres_url)
    await seed(db)
    try:
        held, free = await _host(db), await _host(db)
        boot = new_boot_id()
        async with db.transaction() as holder:  # e.g. a resync of `held`, or the other monitor
            await holder.execute(select(Host).where(Host.host_uuid == held).with_for_update())
            async with db.transaction() as session:
                results = await apply_events(session, [(_state(held, boot), Gaps.WAIT),
                                                       (_state(free, boot), Gaps.WAIT)],
                                             skip_busy=True)
        assert isinstance(results[0], HostBusy) and results[1] is Outcome.APPLIED
        assert (await _position(db, held))[1] == 0 and (await _position(db, free))[1] == 1
    finally:
        await db.dispose()
