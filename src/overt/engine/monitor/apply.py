"""Applying one node event to the database, in per-node sequence order.

The database is the arbiter of order: a host's row records the agent run
(`boot_id`) and the last event applied (`last_seq`), and an event is applied
under that row's lock only when it is the next one. What happens to an event
that comes before its predecessor depends on how events arrive:

- `Gaps.WAIT` (competing monitors on the broker): its predecessor is in another
  monitor's hands, so it is refused (`EventTooEarly`) and given again later;
- `Gaps.RESYNC` (the inbox, which keeps arrival order): its predecessors were
  lost, so it is applied and the host is resynchronised from a full report.

Duplicates (at-least-once delivery) and late events of an earlier agent run are
skipped. See docs/broker.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.bulk import among, table_of, update_by_id
from overt.engine.db.tables import Cluster, Host, Lock, Vm, utcnow
from overt.engine.model.host_actions import MONITORED
from overt.engine.model.status import HostStatus
from overt.engine.monitor.reconcile import apply_vm_report, mark_host_up, reconcile
from overt.engine.monitor.required_networks import judge_host
from overt.protocol import EventEnvelope
from overt.protocol.boots import is_earlier_boot
from overt.protocol.events import Heartbeat, HostStateReport, VmLifecycle
from overt.protocol.host import HostState

log = logging.getLogger(__name__)

class Outcome(Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # already applied (at-least-once delivery)
    STALE = "stale"  # from an earlier run of the agent than the one recorded
    UNKNOWN_HOST = "unknown_host"
    IGNORED = "ignored"  # e.g. the host is in maintenance


class Gaps(Enum):
    """What to do with an event whose predecessor is not applied yet."""

    WAIT = "wait"  # refuse it (EventTooEarly): the predecessor is on its way
    RESYNC = "resync"  # apply it: the predecessors were lost, resync the host


class ApplyLater(RuntimeError):
    """The event cannot be applied now; it changed nothing and may be given again."""


class EventTooEarly(ApplyLater):
    """The previous event of the same host and run is not applied yet; try again later."""


class HostBusy(ApplyLater):
    """Another transaction holds the host's row (a resync, the other monitor); try again."""


async def apply_event(session: AsyncSession, envelope: EventEnvelope, *,
                      gaps: Gaps = Gaps.RESYNC) -> Outcome:
    """Apply one event; raises ApplyLater when it must wait (its predecessor, its host)."""
    result = (await apply_events(session, [(envelope, gaps)]))[0]
    if isinstance(result, ApplyLater):
        raise result
    return result


async def apply_events(session: AsyncSession, events: Sequence[tuple[EventEnvelope, Gaps]], *,
                       skip_busy: bool = False) -> list[Outcome | ApplyLater]:
    """Apply events (of many hosts, a host's in order) in the caller's transaction (see
    `apply_batch`)."""
    return (await apply_batch(session, events, skip_busy=skip_busy))[0]


@dataclass(frozen=True)
class Resync:
    """A host's full state, fetched from its node by a resync, to apply in the queue of its
    events: after the events that came before it, so the two never meet on the host's row."""

    host_uuid: uuid.UUID
    state: HostState


async def apply_batch(session: AsyncSession, events: Sequence[tuple[EventEnvelope, Gaps]],
                      resyncs: Sequence[Resync] = (), *, skip_busy: bool = False
                      ) -> tuple[list[Outcome | ApplyLater], list[Outcome | HostBusy]]:
    """Apply events (of many hosts, a host's in order), then the resyncs' full states, in
    the caller's transaction.

    The hosts' rows are locked together, in id order so that two monitors never
    deadlock. An event that must wait changes nothing and gets its ApplyLater in the
    result (EventTooEarly; HostBusy, with `skip_busy`, when another transaction holds
    its host's row: a batch never waits behind one slow host); the others are
    applied. Any other failure fails them all.

    Most events of a fleet are heartbeats of hosts that are up: those hosts are never
    loaded as ORM objects; their stream position and heartbeat are written with one
    bulk UPDATE for the whole batch (see `_Position`). The hosts with other news are
    loaded and go through the full path.

    A resync's state is applied unless events newer than it were applied meanwhile
    (`Outcome.STALE`: the host is marked to be asked again); it comes after every event
    of the batch, which were queued before it. The rows are locked `FOR NO KEY UPDATE`
    (a host's id never changes here): other transactions that only refer to a host (a
    VM placed on it, an audit event of it) do not wait for the batch."""
    if any(envelope.seq is None for envelope, _gaps in events):
        raise ValueError("stats samples are written in bulk by StatsWriter, not one by one")
    wanted = sorted({envelope.host_uuid for envelope, _gaps in events}
                    | {resync.host_uuid for resync in resyncs})
    # What can be read before any row is locked is read first (the lifecycle events' VMs
    # and their job locks, the clusters of a batch with news beyond heartbeats): the rows
    # are then held for as few round trips as can be, each a moment in which the event
    # loop serves other work and whoever wants those rows waits or finds them busy.
    locked = await _prefetch_vms(session, [envelope for envelope, _gaps in events])
    if resyncs or any(not isinstance(envelope.event, Heartbeat) for envelope, _gaps in events):
        locked.vms.extend((await session.execute(select(Cluster))).scalars())
    positions = {row.host_uuid: _Position(*row) for row in (await session.execute(  # type: ignore[arg-type]
        select(*_POSITION_COLUMNS).where(among(session, Host.host_uuid, wanted)).order_by(Host.id)
        .with_for_update(skip_locked=skip_busy, key_share=True)))}
    busy: set[uuid.UUID] = set()
    if skip_busy and len(positions) < len(wanted):
        busy = {u for u in (await session.execute(select(Host.host_uuid).where(
            Host.host_uuid.in_([u for u in wanted if u not in positions])))).scalars()
            if u is not None}
    full = {envelope.host_uuid for envelope, _gaps in events
            if not _heard_only(positions.get(envelope.host_uuid), envelope)} | {
        resync.host_uuid for resync in resyncs}
    hosts: dict[uuid.UUID, Host] = {}
    if full & positions.keys():  # already locked above
        hosts = {host.host_uuid: host for host in (await session.execute(select(Host).where(
            Host.host_uuid.in_(sorted(full & positions.keys()))))).scalars()
            if host.host_uuid is not None}
    if hosts and not any(isinstance(vm, Cluster) for vm in locked.vms):
        # Their clusters, held for the batch: judging a host's networks looks its cluster up.
        locked.vms.extend(await _clusters(session, hosts.values()))
    results: list[Outcome | ApplyLater] = []
    for envelope, gaps in events:
        if envelope.host_uuid in busy:
            results.append(HostBusy(f"node {envelope.host_uuid}: its host is being updated"))
            continue
        position = positions.get(envelope.host_uuid)
        host = hosts.get(envelope.host_uuid)
        try:
            if position is None:
                results.append(Outcome.UNKNOWN_HOST)
            elif host is not None:
                results.append(await _apply_to(session, host, envelope, gaps, locked))
            else:
                results.append(_heard(position, envelope, gaps))
        except EventTooEarly as early:
            results.append(early)
    await _write_positions(session, [p for u, p in positions.items() if u not in hosts])
    resynced: list[Outcome | HostBusy] = []
    for resync in resyncs:
        host = hosts.get(resync.host_uuid)
        if resync.host_uuid in busy:
            resynced.append(HostBusy(f"node {resync.host_uuid}: its host is being updated"))
        elif host is None:
            resynced.append(Outcome.UNKNOWN_HOST)
        elif not take_position(host, resync.state):
            log.info("host %s: events newer than its state report were applied meanwhile; "
                     "asking again", host.name, extra={"host": host.name})
            host.needs_resync = True
            resynced.append(Outcome.STALE)
        else:
            log.debug("host %s: applying its state at event %d (%d VMs)", host.name,
                      resync.state.seq, len(resync.state.vms),
                      extra={"host": host.name, "seq": resync.state.seq})
            await reconcile(session, host, resync.state)
            resynced.append(Outcome.APPLIED)
    return results, resynced


def take_position(host: Host, state: HostState) -> bool:
    """Move the host's event position to the moment of `state`; False when the database
    already holds newer news of that run (the report is out of date)."""
    if state.boot_id is None:  # an agent that does not say which run it is in
        host.last_seq = max(host.last_seq, state.seq)
        return True
    if host.boot_id == state.boot_id:
        if host.last_seq > state.seq:
            return False
        host.last_seq = state.seq
        return True
    if host.boot_id is not None and is_earlier_boot(state.boot_id, host.boot_id):
        log.warning("host %s: its agent's current run looks older than the one recorded "
                    "(has its clock gone back?); following the agent", host.name,
                    extra={"host": host.name})
    # Events of this run up to `state.seq` are older than the report: skipped on arrival.
    host.boot_id, host.last_seq = state.boot_id, state.seq
    return True


_POSITION_COLUMNS = (Host.id, Host.host_uuid, Host.name, Host.status, Host.boot_id,
                     Host.last_seq, Host.needs_resync)


@dataclass
class _Position:
    """A host's stream position, read without the ORM: all a heartbeat of a host that is
    up changes (besides its timestamp and free memory)."""

    id: uuid.UUID
    host_uuid: uuid.UUID
    name: str
    status: HostStatus
    boot_id: uuid.UUID | None
    last_seq: int
    needs_resync: bool
    heard_at: dt.datetime | None = None
    free_memory_mib: int | None = None
    read: tuple[uuid.UUID | None, int, bool] = (None, 0, False)

    def __post_init__(self) -> None:
        self.read = (self.boot_id, self.last_seq, self.needs_resync)


def _heard_only(position: _Position | None, envelope: EventEnvelope) -> bool:
    """Whether the event is a heartbeat that at most moves `position` and marks the host
    heard: a host that is up stays up, and a heartbeat changes nothing else."""
    return position is None or (isinstance(envelope.event, Heartbeat)
                                and position.status == HostStatus.UP)


def _heard(position: _Position, envelope: EventEnvelope, gaps: Gaps) -> Outcome:
    """A heartbeat of a host that is up (`_apply_to`'s, without the ORM)."""
    skipped = _advance(position, envelope, gaps)
    if skipped is not None:
        return skipped
    assert isinstance(envelope.event, Heartbeat)
    position.heard_at = utcnow()
    position.free_memory_mib = envelope.event.free_memory_mib
    return Outcome.APPLIED


_HOSTS = table_of(Host)


async def _write_positions(session: AsyncSession, positions: list[_Position]) -> None:
    """What `_heard` changed, in one UPDATE per set of changed columns (one statement on
    PostgreSQL, see `db.bulk`): nothing for the events that changed nothing (duplicates);
    else the position and the heartbeat's timestamp and free memory, and the run and
    resync flag only when they changed."""
    changes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for position in sorted(positions, key=lambda p: str(p.id)):
        values: dict[str, Any] = {}
        boot_id, last_seq, needs_resync = position.read
        if position.boot_id != boot_id:
            values["boot_id"] = position.boot_id
        if position.last_seq != last_seq:
            values["last_seq"] = position.last_seq
        if position.needs_resync != needs_resync:
            values["needs_resync"] = position.needs_resync
        if position.heard_at is not None:
            values["last_heartbeat_at"] = position.heard_at
            values["free_memory_mib"] = position.free_memory_mib
        if values:
            changes.setdefault(tuple(sorted(values)), []).append({"id": position.id, **values})
    for rows in changes.values():
        await update_by_id(session, _HOSTS, rows)


async def _prefetch_vms(session: AsyncSession, envelopes: list[EventEnvelope]
                       ) -> Locks:
    """The VMs of the lifecycle events in one query (into the session, where each event
    finds its own without a query), and which of them jobs lock.

    A lock is known ahead only for a VM of a single event and a batch without full
    reports: an event may release its VM's lock (a start's end), a full report any."""
    vm_ids = Counter(envelope.event.vm.vm_id for envelope in envelopes
                     if isinstance(envelope.event, VmLifecycle)
                     and envelope.event.vm.vm_id is not None)
    if not vm_ids:
        return Locks(set(), set())
    # Held here: the session keeps only weak references to what it loaded.
    vms: list[object] = list((await session.execute(select(Vm).where(among(session, Vm.id, vm_ids))
                )).scalars())
    if any(isinstance(envelope.event, HostStateReport) for envelope in envelopes):
        return Locks(set(), set(), vms)
    known = {vm_id for vm_id, count in vm_ids.items() if count == 1}
    locked = set((await session.execute(select(Lock.resource_id).where(
        Lock.resource_type == "vm", among(session, Lock.resource_id, known)))).scalars())
    return Locks(known, locked, vms)


async def _clusters(session: AsyncSession, hosts: Iterable[Host]) -> list[Cluster]:
    wanted = {host.cluster_id for host in hosts}
    if not wanted:
        return []
    return list((await session.execute(select(Cluster).where(
        among(session, Cluster.id, wanted)))).scalars())


@dataclass
class Locks:
    """Of the VMs `known`, those `locked` by jobs (others: ask the database); `vms`, the
    batch's VMs and clusters, loaded ahead (and held: the session's references are weak)."""

    known: set[uuid.UUID]
    locked: set[uuid.UUID]
    vms: list[object] = field(default_factory=list)

    def of(self, vm_id: uuid.UUID | None) -> set[uuid.UUID] | None:
        return self.locked if vm_id in self.known else None


async def _apply_to(session: AsyncSession, host: Host, envelope: EventEnvelope,
                    gaps: Gaps, locks: Locks | None = None) -> Outcome:
    event = envelope.event
    skipped = _advance(host, envelope, gaps)
    if skipped is not None:
        return skipped
    if host.status not in MONITORED:
        return Outcome.IGNORED  # maintenance, pending approval, ...: not monitored
    if isinstance(event, HostStateReport):
        await reconcile(session, host, event.state)
    elif isinstance(event, VmLifecycle):
        log.debug("host %s event %d: VM %s is %s", host.name, envelope.seq, event.vm.name,
                  event.vm.state.value, extra={"host": host.name, "vm": event.vm.name,
                                               "vm_id": event.vm.vm_id, "seq": envelope.seq})
        await apply_vm_report(session, host, event.vm,
                              locked=locks.of(event.vm.vm_id) if locks is not None else None)
        host.last_heartbeat_at = utcnow()
    elif isinstance(event, Heartbeat):
        if host.status != HostStatus.UP:
            host.needs_resync = True
            mark_host_up(session, host)
            await judge_host(session, host)  # on its last report, until the resync's
        else:
            mark_host_up(session, host)
        host.free_memory_mib = event.free_memory_mib
    return Outcome.APPLIED


def _advance(host: Host | _Position, envelope: EventEnvelope, gaps: Gaps) -> Outcome | None:
    """Move the host's stream position to this event, or say why it is skipped.

    Raises EventTooEarly for an event that must wait for its predecessor."""
    seq = envelope.seq
    assert seq is not None
    if host.boot_id == envelope.boot_id:
        if seq <= host.last_seq:
            return Outcome.DUPLICATE
        if seq > host.last_seq + 1:
            if gaps is Gaps.WAIT:
                raise EventTooEarly(f"host {host.name}: event {seq} came before event "
                                    f"{host.last_seq + 1} was applied")
            log.warning("host %s: events %d..%d were lost; resynchronising", host.name,
                        host.last_seq + 1, seq - 1, extra={"host": host.name, "seq": seq})
            host.needs_resync = True
    elif host.boot_id is not None and is_earlier_boot(envelope.boot_id, host.boot_id):
        # Late news of an earlier agent run. A resync settles it either way (should the
        # node's clock have gone back, its current run looks older than it is).
        log.info("host %s: skipped event %d of an earlier agent run", host.name, seq,
                 extra={"host": host.name, "seq": seq})
        host.needs_resync = host.status in MONITORED
        return Outcome.STALE
    else:
        # A new agent run: its events start again at 1, and its first event is a full report.
        if seq > 1 and gaps is Gaps.WAIT:
            raise EventTooEarly(f"host {host.name}: event {seq} of a new agent run came "
                                "before its first event was applied")
        host.boot_id, host.last_seq = envelope.boot_id, 0
        if seq > 1 or not isinstance(envelope.event, HostStateReport):
            host.needs_resync = True
    host.last_seq = seq
    return None
