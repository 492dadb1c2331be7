"""The notifier: reads the audit log after its cursor, in id order, and sends a trap per
subscribed event to the subscription's managers.

Ordering and delivery rules:
- Events are taken in id order. Each is *claimed* by moving the cursor to it with a
  compare-and-set on the cursor row before its traps are sent, so of several engine
  processes running a notifier exactly one sends it, and a restart resumes after the last
  claimed event: nothing is re-sent. Events without a subscriber are claimed together
  with the next one that has one. A process killed between the claim and the send loses
  that one event's traps (traps are UDP: a receiver may miss one anyway).
- An id missing after the cursor may belong to a transaction not yet committed
  (PostgreSQL hands out ids before commit): the notifier waits for it, and skips it only
  once it has stayed missing for `gap_grace_s` (a rolled-back transaction).
- A trap that cannot be sent is logged (with no secret) and does not stop the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db import bulk
from overt.engine.db.availability import database_unavailable
from overt.engine.db.database import Database
from overt.engine.db.tables import (
    AuditEvent,
    EventSubscription,
    Host,
    NotifierCursor,
    SnmpManager,
    StorageDomain,
    Vm,
    utcnow,
)
from overt.engine.notifier.events import events_of
from overt.engine.notifier.managers import credentials
from overt.engine.notifier.traps import ENGINE_EVENT, EventFacts, varbinds
from overt.engine.secrets import SecretBox
from overt.snmp.trap import Credentials, TrapError, VarBind, send_trap

log = logging.getLogger(__name__)
CURSOR_ROW = 1
BATCH = 200

SendTrap = Callable[[str, int, Credentials, tuple[int, ...], list[VarBind]], Awaitable[None]]


@dataclass(frozen=True)
class Delivery:
    """One trap to send: an event's facts to one manager."""

    manager: SnmpManager
    facts: EventFacts


class Notifier:
    def __init__(self, db: Database, box: SecretBox, *, interval_s: float = 2.0,
                 gap_grace_s: float = 30.0, send: SendTrap | None = None) -> None:
        self.db, self.box = db, box
        self.interval_s, self.gap_grace_s = interval_s, gap_grace_s
        self._send: SendTrap = send or (lambda host, port, creds, oid, binds:
                                        send_trap(host, port, creds, oid, binds))
        self._gaps: dict[int, float] = {}  # missing id -> when first seen missing
        self.wakeup = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                await self.notify_pending()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if database_unavailable(exc):
                    log.warning("the notifier cannot reach the database (%s); it tries again",
                                type(exc).__name__)
                else:
                    log.exception("the notifier failed a pass; it tries again")
            self.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), self.interval_s)

    async def notify_pending(self) -> int:
        """Notify every event after the cursor that can be taken now; how many were taken.

        Events nobody is subscribed to (most of them) are claimed together, in one move of
        the cursor, up to and including the next event that has traps to send: a busy
        engine's audit log costs a transaction per subscribed event, not per event."""
        taken = 0
        while True:
            async with self.db.transaction() as session:
                last = await _cursor(session)
                events = list((await session.execute(
                    select(AuditEvent).where(AuditEvent.id > last).order_by(AuditEvent.id)
                    .limit(BATCH))).scalars())
                if not events:
                    return taken
                subscribed = await _subscribed(session)
            position, pending = last, list(events)
            while pending:
                run = self._run(position, pending, subscribed)
                if not run:
                    return taken
                deliveries = await self._claim(position, run)
                if deliveries is None:  # another notifier took it: read the cursor again
                    break
                position = run[-1].id
                taken += len(run)
                del pending[:len(run)]
                await asyncio.shield(self._deliver(deliveries))
            else:
                if len(events) < BATCH:
                    return taken

    def _run(self, last: int, events: list[AuditEvent], subscribed: set[str]
             ) -> list[AuditEvent]:
        """The events that can be claimed together after `last`: in id order without a gap
        still waited for, ending at the first that has a subscriber."""
        run: list[AuditEvent] = []
        for event in events:
            if not self._may_take(last, event.id):
                break
            run.append(event)
            last = event.id
            if _wanted(event, subscribed):
                break
        return run

    def _may_take(self, last: int, event_id: int) -> bool:
        if event_id == last + 1:
            self._gaps.clear()
            return True
        loop = asyncio.get_running_loop()
        first_seen = self._gaps.setdefault(last + 1, loop.time())
        if loop.time() - first_seen < self.gap_grace_s:
            return False
        log.warning("audit events %d-%d never appeared (rolled back): skipped", last + 1,
                    event_id - 1)
        self._gaps.clear()
        return True

    async def _claim(self, last: int, run: list[AuditEvent]) -> list[Delivery] | None:
        """Move the cursor from `last` to the run's end (compare-and-set); the traps of the
        run's events, or None when another notifier moved it first."""
        async with self.db.transaction() as session:
            moved = await session.execute(
                update(NotifierCursor).where(NotifierCursor.id == CURSOR_ROW,
                                             NotifierCursor.last_event_id == last)
                .values(last_event_id=run[-1].id, updated_at=utcnow()))
            if getattr(moved, "rowcount", 0) != 1:
                return None
            subscribed = await _subscribed(session)  # as of the claim
            deliveries: list[Delivery] = []
            for event in run:
                if _wanted(event, subscribed):
                    deliveries += await _deliveries(session, event)
            return deliveries

    async def _deliver(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            manager = delivery.manager
            try:
                creds = credentials(self.box, manager)
                await self._send(manager.host, manager.port, creds, ENGINE_EVENT,
                                 varbinds(delivery.facts))
            except (TrapError, ValueError, OSError) as exc:
                log.error("event %d (%s) could not be sent to SNMP manager %s: %s",
                          delivery.facts.event_id, delivery.facts.event_name, manager.name, exc)
            else:
                log.info("event %d (%s) sent to SNMP manager %s", delivery.facts.event_id,
                         delivery.facts.event_name, manager.name)


async def _cursor(session: AsyncSession) -> int:
    """The cursor; made on first use at the current end of the log (events recorded before
    the engine notified anything are not notified)."""
    row = await session.get(NotifierCursor, CURSOR_ROW)
    if row is None:
        # Two notifiers starting together both make it: the first one's row stays.
        end = (await session.execute(select(AuditEvent.id).order_by(AuditEvent.id.desc())
                                     .limit(1))).scalar_one_or_none() or 0
        await bulk.insert_if_absent(session, bulk.table_of(NotifierCursor),
                                    {"id": CURSOR_ROW, "last_event_id": end})
        row = await session.get(NotifierCursor, CURSOR_ROW, populate_existing=True)
        assert row is not None
    return row.last_event_id


async def _subscribed(session: AsyncSession) -> set[str]:
    """The event names someone is subscribed to by SNMP."""
    return set((await session.execute(
        select(EventSubscription.event).where(EventSubscription.notification_method == "snmp")
        .distinct())).scalars())


def _wanted(event: AuditEvent, subscribed: set[str]) -> bool:
    """Whether someone is subscribed to one of the event's names."""
    return not subscribed.isdisjoint(events_of(event.code))


async def _deliveries(session: AsyncSession, event: AuditEvent) -> list[Delivery]:
    names = events_of(event.code)
    if not names:
        return []
    subscriptions = list((await session.execute(
        select(EventSubscription).where(EventSubscription.event.in_(names),
                                        EventSubscription.notification_method == "snmp")
        .order_by(EventSubscription.event))).scalars())
    if not subscriptions:
        return []
    managers = list((await session.execute(select(SnmpManager).order_by(SnmpManager.name)
                                           )).scalars())
    out: list[Delivery] = []
    seen: set[tuple[str, uuid.UUID]] = set()
    for sub in subscriptions:
        facts = await _facts(session, event, sub.event)
        for manager in managers:
            if sub.address and sub.address != manager.name:
                continue
            if (sub.event, manager.id) not in seen:
                seen.add((sub.event, manager.id))
                out.append(Delivery(manager, facts))
    return out


async def _facts(session: AsyncSession, event: AuditEvent, name: str) -> EventFacts:
    vm = await session.get(Vm, event.vm_id) if event.vm_id else None
    host = await session.get(Host, event.host_id) if event.host_id else None
    domain = await session.get(StorageDomain, event.storage_domain_id) \
        if event.storage_domain_id else None
    return EventFacts(
        event_id=event.id, event_name=name, code=event.code, severity=event.severity,
        message=event.description, time=event.time,
        vm_id=str(event.vm_id or ""), vm_name=vm.name if vm else "",
        host_id=str(event.host_id or ""), host_name=host.name if host else "",
        storage_domain_id=str(event.storage_domain_id or ""),
        storage_domain_name=domain.name if domain else "")
