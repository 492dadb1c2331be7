"""The shape of the monitor's work: a host's resync goes through the queue of its events
(they never meet on the host's row), no transaction is open while a node is asked,
resyncs are paced, and the heartbeat watch never waits behind an event batch."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from contextvars import ContextVar

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from overt.bus.base import NodeAddress
from overt.engine.db import migrate
from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID, seed
from overt.engine.db.tables import Cluster, Host, Vm, utcnow
from overt.engine.model.status import HostStatus, VmStatus
from overt.engine.monitor.apply import Gaps, HostBusy, Outcome
from overt.engine.monitor.service import Monitor
from overt.engine.nodes import NodeClient
from overt.protocol import CommandEnvelope, EventEnvelope, Reply
from overt.protocol.boots import new_boot_id
from overt.protocol.events import Heartbeat, HostStateReport
from overt.protocol.host import HostState, VmState, VmStatusReport

VMS = 20


async def _host_with_vms(db: Database) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A host that is up with VMS VMs placed on it (being launched)."""
    host_uuid = uuid.uuid4()
    async with db.transaction() as session:
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert cluster is not None
        host = Host(id=uuid.uuid4(), name=f"h-{host_uuid.hex[:8]}", address="192.0.2.1",
                    cluster_id=cluster.id, status=HostStatus.UP.value, host_uuid=host_uuid,
                    last_heartbeat_at=utcnow())
        session.add(host)
        await session.flush()
        vms = [Vm(id=uuid.uuid4(), name=f"{host.name}-{n}", cluster_id=cluster.id,
                  template_id=BLANK_TEMPLATE_ID, memory_mib=64,
                  status=VmStatus.WAIT_FOR_LAUNCH.value, host_id=host.id) for n in range(VMS)]
        session.add_all(vms)
    return host_uuid, [vm.id for vm in vms]


class Node:
    """One simulated node: its events' sequence, and its answer to host.state (all its VMs
    running, as of its last event). `during_call` runs inside each call."""

    def __init__(self, host_uuid: uuid.UUID, vm_ids: list[uuid.UUID]) -> None:
        self.host_uuid, self.vm_ids = host_uuid, vm_ids
        self.boot = new_boot_id()
        self.seq = 0
        self.calls: list[float] = []  # monotonic, when each call came
        self.during_call: object = None

    def next_event(self, event: object | None = None) -> EventEnvelope:
        self.seq += 1
        return EventEnvelope(host_uuid=self.host_uuid, boot_id=self.boot, seq=self.seq,
                             event=event or Heartbeat(vm_count=len(self.vm_ids),
                                                      free_memory_mib=1000, uptime_s=self.seq))

    def state(self) -> HostState:
        return HostState(host_uuid=self.host_uuid, free_memory_mib=1000, seq=self.seq,
                         boot_id=self.boot, vms=tuple(
                             VmStatusReport(vm_id=vm_id, name=f"vm-{n}", state=VmState.RUNNING)
                             for n, vm_id in enumerate(self.vm_ids)))


class Nodes:
    """A transport of simulated nodes that answer host.state."""

    def __init__(self, *nodes: Node) -> None:
        self.nodes = {node.host_uuid: node for node in nodes}

    async def start(self, sink: object) -> None:
        return None

    async def call(self, address: NodeAddress, envelope: CommandEnvelope) -> Reply:
        node = self.nodes[address.host_uuid]
        node.calls.append(time.monotonic())
        if callable(node.during_call):
            await node.during_call()
        return Reply.success(envelope.request_id, node.state())

    async def close(self) -> None:
        return None


async def _row(db: Database, host_uuid: uuid.UUID) -> Host:
    async with db.transaction() as session:
        return (await session.execute(select(Host).where(Host.host_uuid == host_uuid))
                ).scalar_one()


async def _enrolled(db: Database, monitor: Monitor, node: Node) -> Host:
    """The node's first event (its full report) applied, then its VMs placed again (as
    `bench/scale.py` does): only a resync of the host brings them up."""
    await monitor.apply(node.next_event(HostStateReport(state=node.state())))
    async with db.transaction() as session:
        await session.execute(Vm.__table__.update().where(Vm.id.in_(node.vm_ids)).values(
            status=VmStatus.WAIT_FOR_LAUNCH.value))
    return await _row(db, node.host_uuid)


async def _vm_statuses(db: Database, vm_ids: list[uuid.UUID]) -> set[str]:
    async with db.transaction() as session:
        return set((await session.execute(select(Vm.status).where(Vm.id.in_(vm_ids))))
                   .scalars())


async def test_a_resync_and_the_hosts_events_never_contend(db: Database) -> None:
    """A host's heartbeats keep coming (one after the other, as its lane gives them) while
    the host is resynchronised: none is refused as busy, the state is applied (its VMs
    up) and the host's position is its last event."""
    host_uuid, vm_ids = await _host_with_vms(db)
    node = Node(host_uuid, vm_ids)
    nodes = Nodes(node)
    monitor = Monitor(db, NodeClient(nodes), heartbeat_timeout_s=30)
    host = await _enrolled(db, monitor, node)
    refused = 0

    async def lane() -> None:
        nonlocal refused
        for _ in range(60):
            event = node.next_event()
            while True:
                try:
                    await monitor.apply(event)
                    break
                except HostBusy:
                    refused += 1
                    await asyncio.sleep(0.01)

    async def resync_until_done() -> None:
        for _ in range(10):  # a state older than an event applied meanwhile: asked again
            await monitor.resync(host)
            if await _vm_statuses(db, vm_ids) == {VmStatus.UP.value}:
                return

    async with db.transaction() as session:
        await session.execute(Host.__table__.update().where(Host.id == host.id).values(
            needs_resync=True))
    try:
        await asyncio.gather(lane(), resync_until_done(), resync_until_done())
    finally:
        await monitor.batcher.close()
    assert refused == 0 and monitor.report.outcomes["busy"] == 0
    assert await _vm_statuses(db, vm_ids) == {VmStatus.UP.value}
    row = await _row(db, host_uuid)
    assert (row.boot_id, row.last_seq) == (node.boot, node.seq)


async def test_a_resync_is_applied_after_the_events_queued_before_it(db: Database) -> None:
    """Events 2..5 queued, then the state as of event 5, then event 6: the events before
    it are applied, the state is not out of date, the event after it is applied after."""
    host_uuid, vm_ids = await _host_with_vms(db)
    node = Node(host_uuid, vm_ids)
    nodes = Nodes(node)
    monitor = Monitor(db, NodeClient(nodes), heartbeat_timeout_s=30)
    await _enrolled(db, monitor, node)
    before = [node.next_event() for _ in range(4)]
    state = node.state()
    after = node.next_event()
    try:
        results = await asyncio.gather(
            *(monitor.batcher.apply(event, Gaps.WAIT) for event in before),
            monitor.batcher.resync(host_uuid, state),
            monitor.batcher.apply(after, Gaps.WAIT))
    finally:
        await monitor.batcher.close()
    assert results == [Outcome.APPLIED] * 6
    assert await _vm_statuses(db, vm_ids) == {VmStatus.UP.value}
    row = await _row(db, host_uuid)
    assert (row.last_seq, row.needs_resync) == (6, False)


_INSIDE: ContextVar[bool] = ContextVar("inside_a_transaction", default=False)


def _count_transactions(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mark the task that is inside one of `db`'s transactions (`_INSIDE`)."""
    real = db.transaction

    @contextlib.asynccontextmanager
    async def marked() -> AsyncIterator[AsyncSession]:
        token = _INSIDE.set(True)
        try:
            async with real() as session:
                yield session
        finally:
            _INSIDE.reset(token)

    monkeypatch.setattr(db, "transaction", marked)


async def _idle_in_transaction(db: Database) -> int:
    """Sessions of this database left open in a transaction, doing nothing (PostgreSQL)."""
    if db.is_sqlite:
        return 0
    async with db.engine.connect() as conn:
        return int((await conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"))).scalar_one())


async def test_no_transaction_is_open_while_a_node_is_asked_for_its_state(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    host_uuid, vm_ids = await _host_with_vms(db)
    node = Node(host_uuid, vm_ids)
    nodes = Nodes(node)
    monitor = Monitor(db, NodeClient(nodes), heartbeat_timeout_s=30)
    host = await _enrolled(db, monitor, node)
    seen: list[tuple[bool, int]] = []

    async def during_call() -> None:
        await asyncio.sleep(0.05)  # the node takes its time: nothing of ours is held
        seen.append((_INSIDE.get(), await _idle_in_transaction(db)))

    node.during_call = during_call
    _count_transactions(db, monkeypatch)
    async with db.transaction() as session:
        (await session.get(Host, host.id)).needs_resync = True  # type: ignore[union-attr]
    try:
        await monitor.resync(host)
    finally:
        await monitor.batcher.close()
    assert seen == [(False, 0)]
    assert await _vm_statuses(db, vm_ids) == {VmStatus.UP.value}


async def test_resyncs_are_paced_and_slower_while_the_monitor_is_behind(db: Database) -> None:
    """Hosts coming up all want a resync: they start at the monitor's pace, and at the
    slow pace while its events lag (the events come first). A monitor resynchronises only
    the hosts whose events it applies."""
    pairs = [await _host_with_vms(db) for _ in range(5)]
    fleet = [Node(h, vms) for h, vms in pairs]
    nodes = Nodes(*fleet)
    monitor = Monitor(db, NodeClient(nodes), heartbeat_timeout_s=30, tick_s=0.05,
                      resync_rate_per_s=10)
    for node in fleet:
        await _enrolled(db, monitor, node)
    theirs = fleet[4]
    monitor.owns = lambda host: host != theirs.host_uuid
    await monitor._resync_everything()
    loop = asyncio.create_task(monitor._resync_loop())
    try:
        async with asyncio.timeout(30):
            while sum(len(n.calls) for n in fleet) < 4:
                assert not loop.done(), loop
                await asyncio.sleep(0.02)
        starts = sorted(t for n in fleet for t in n.calls)
        assert min(b - a for a, b in itertools.pairwise(starts)) >= 0.09
        assert theirs.calls == []  # another monitor's
        async with asyncio.timeout(30):  # the four applied (else they would clear the marks)
            while monitor._resyncing:
                assert not loop.done(), loop
                await asyncio.sleep(0.02)
        # Behind the events: 2 a second.
        monitor.report.behind_s = lambda recent_s=5.0: 60.0  # type: ignore[method-assign]
        await monitor._resync_everything()
        begun = time.monotonic()
        async with asyncio.timeout(30):
            while sum(len([t for t in n.calls if t >= begun]) for n in fleet) < 3:
                assert not loop.done(), loop
                await asyncio.sleep(0.02)
        later = sorted(t for n in fleet for t in n.calls if t >= begun)
        assert min(b - a for a, b in itertools.pairwise(later)) >= 0.45
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await monitor.close()
    assert theirs.calls == []


@pytest.mark.pg
async def test_the_heartbeat_watch_never_waits_behind_a_held_host(
        fresh_postgres_url: str) -> None:
    """A silent host whose row another transaction holds (an event batch hearing it) is
    skipped, not waited for; it is judged once the row is free, if still silent."""
    migrate.upgrade(fresh_postgres_url)
    db = Database(fresh_postgres_url)
    await seed(db)
    try:
        host_uuid, _vms = await _host_with_vms(db)
        async with db.transaction() as session:
            await session.execute(Host.__table__.update().where(
                Host.host_uuid == host_uuid).values(last_heartbeat_at=None))
        monitor = Monitor(db, NodeClient(Nodes()), heartbeat_timeout_s=10)
        async with db.transaction() as holder:
            await holder.execute(select(Host.id).where(Host.host_uuid == host_uuid)
                                 .with_for_update(key_share=True))
            async with asyncio.timeout(5):
                await monitor.check_heartbeats()
        assert (await _row(db, host_uuid)).status == HostStatus.UP.value
        await monitor.check_heartbeats()
        assert (await _row(db, host_uuid)).status == HostStatus.CONNECTING.value
    finally:
        await db.dispose()
