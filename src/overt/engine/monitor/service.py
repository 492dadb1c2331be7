"""The monitor's loops: apply events, watch heartbeats, resynchronise hosts, keep stats tidy."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import uuid
from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import load_only

from overt.bus.base import TransportError
from overt.engine.db import change_log
from overt.engine.db.database import Database
from overt.engine.db.observed_news import Announcer
from overt.engine.db.tables import Host, utcnow
from overt.engine.jobs.observe import ObservedChanges
from overt.engine.model.fencing_policy import FencingPolicy
from overt.engine.model.host_actions import HOST_ACTIONS, MONITORED, HostAction
from overt.engine.model.status import HostStatus
from overt.engine.monitor import inbox
from overt.engine.monitor.apply import EventTooEarly, Gaps, HostBusy, Outcome, apply_events
from overt.engine.monitor.batch import EventBatcher
from overt.engine.monitor.downsample import downsample
from overt.engine.monitor.host_loss import judge_silent_host
from overt.engine.monitor.report import MonitorReport
from overt.engine.monitor.stats_writer import StatsWriter
from overt.engine.monitor.storage_reach import StorageReachMonitor
from overt.engine.nodes import NodeClient, NodeCommandFailed
from overt.engine.secrets import SecretBox
from overt.protocol import EventEnvelope
from overt.protocol.commands import HostStateCommand
from overt.protocol.events import HostStateReport, VmLifecycle

log = logging.getLogger(__name__)

# How long an event may wait for its predecessor before the monitor stops waiting,
# applies it and resynchronises the host (the predecessor was lost, e.g. purged from
# the broker). In normal operation a predecessor arrives within milliseconds.
EARLY_PATIENCE_S = 60.0
# Resyncs a monitor runs at once (node calls in flight): after a broker or engine restart
# a whole fleet needs one.
RESYNC_CONCURRENCY = 8
# Resyncs a monitor starts a second, and while it is more than RESYNC_BEHIND_S behind the
# nodes' events: a fleet coming up asks for thousands, each a full report to apply, and
# the events come first (a host is up on its first heartbeat; the resync brings its VMs).
RESYNC_RATE_PER_S = 20.0
RESYNC_RATE_BEHIND_PER_S = 2.0
RESYNC_BEHIND_S = 5.0
# A resync's state whose host another process holds: tried again after these delays.
RESYNC_BUSY_RETRIES_S = (0.1, 0.3, 1.0)
# Hosts that go non responsive when silent: the monitor is waiting to hear from them.
_HEARD_FROM = HOST_ACTIONS[HostAction.LOSE].allowed


class Monitor:
    def __init__(self, db: Database, nodes: NodeClient, *, heartbeat_timeout_s: float,
                 read_inbox: bool = True, wakeup: asyncio.Event | None = None,
                 tick_s: float = 1.0, report_interval_s: float = 60.0,
                 changes: ObservedChanges | None = None,
                 announcer: Announcer | None = None,
                 fencing_defaults: FencingPolicy | None = None,
                 storage_probe_interval_s: float = 10.0,
                 secrets: SecretBox | None = None,
                 heartbeat_check_s: float | None = None,
                 resync_rate_per_s: float = RESYNC_RATE_PER_S) -> None:
        self.db = db
        # The grace of clusters whose fencing policy sets none (the engine's settings).
        self.fencing_defaults = fencing_defaults
        self.nodes = nodes
        self.heartbeat_timeout = dt.timedelta(seconds=heartbeat_timeout_s)
        self.read_inbox = read_inbox
        self.wakeup = wakeup or asyncio.Event()
        self.tick_s = tick_s
        # How often hosts are judged on their heartbeats (None: every tick).
        self.heartbeat_check_s = heartbeat_check_s
        self.changes = changes  # told after news is committed: jobs in this process wait on it
        self.announcer = announcer  # and jobs in other processes (PostgreSQL's NOTIFY)
        self.report = MonitorReport(report_interval_s)
        self.stats = StatsWriter(db, on_written=self.report.stats)
        self.batcher = EventBatcher(db)
        # `secrets`: the engine's box, which opens the CHAP passwords of iSCSI domains to
        # probe (None: a monitor that reaches none).
        self.storage = StorageReachMonitor(db, nodes, interval_s=storage_probe_interval_s,
                                           secrets=secrets)
        self._resyncing: set[str] = set()
        # Set by a job in this process that marked a host for resync (`resync_soon`): the
        # resync loop looks at once instead of at its next tick.
        self._resync_wanted = asyncio.Event()
        self._unreachable: dict[str, str] = {}  # host name -> the last reason said
        self._judging_paused = False  # behind the nodes' events: see check_heartbeats
        self._resync_slots = asyncio.Semaphore(RESYNC_CONCURRENCY)
        self.resync_rate_per_s = resync_rate_per_s
        self._pacing = asyncio.Lock()
        self._last_resync_at = -1e9  # monotonic: when the last resync started
        # The hosts whose events this monitor applies (their partitions are its own; None:
        # every host). Only those are resynchronised and judged on heartbeats here, so a
        # host's resync, judgement and events all go through this monitor's one queue.
        self.owns: Callable[[uuid.UUID], bool] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._early: dict[tuple[object, object, int], float] = {}  # first refusal, monotonic
        # Full state reports fetched from hosts: a VM action's own events settle its VM,
        # so on an idle engine this grows only at start, on reconnects and on lost events.
        self.resyncs = 0

    async def apply(self, envelope: EventEnvelope) -> None:
        """The EventSink of transports that deliver to the monitor itself (amqp).

        Several monitors compete for the events, so an event may come before its
        predecessor: it is refused (EventTooEarly) and the transport gives it again."""
        if envelope.seq is None:
            self.stats.add(envelope)
            return
        key = (envelope.host_uuid, envelope.boot_id, envelope.seq)
        now = asyncio.get_running_loop().time()
        waited = now - self._early.get(key, now)
        gaps = Gaps.WAIT if waited < EARLY_PATIENCE_S else Gaps.RESYNC
        if gaps is Gaps.RESYNC:
            log.warning("event %d of node %s waited %.0f s for its predecessor; applying it "
                        "and resynchronising the node", envelope.seq, envelope.host_uuid, waited,
                        extra={"host_id": envelope.host_uuid, "seq": envelope.seq})
        try:
            await self._apply(envelope, gaps)
        except EventTooEarly:
            self._note_early(key, now)
            self.report.event("early", envelope.sent_at)
            raise
        except HostBusy:
            self.report.event("busy", envelope.sent_at)
            raise
        self._early.pop(key, None)

    def _note_early(self, key: tuple[object, object, int], now: float) -> None:
        self._early.setdefault(key, now)
        if len(self._early) > 10_000:  # forget events that were applied by another monitor
            self._early = {k: t for k, t in self._early.items()
                           if now - t < 2 * EARLY_PATIENCE_S}

    async def _apply(self, envelope: EventEnvelope, gaps: Gaps) -> None:
        self._noted(envelope, await self.batcher.apply(envelope, gaps))

    def _noted(self, envelope: EventEnvelope, outcome: Outcome) -> None:
        self.report.event(outcome.value, envelope.sent_at)
        if outcome is Outcome.APPLIED:
            event = envelope.event
            if isinstance(event, VmLifecycle):
                if event.vm.vm_id is not None:
                    self._changed([event.vm.vm_id])
            elif isinstance(event, HostStateReport):  # a host's whole state: any of its VMs
                self._changed(None)
        if outcome is Outcome.UNKNOWN_HOST:
            log.warning("event from unknown node %s dropped", envelope.host_uuid,
                        extra={"host_id": envelope.host_uuid, "seq": envelope.seq})

    def _changed(self, vm_ids: list[uuid.UUID] | None) -> None:
        """Committed news of these VMs (None: of any VM): the jobs waiting on them look."""
        if self.changes is not None:
            self.changes.changed(vm_ids)
        if self.announcer is not None:
            self.announcer.changed(vm_ids)

    async def run(self) -> None:
        await self._resync_everything()
        loops = [self._watchdog_loop(), self._resync_loop(), self._housekeeping_loop(),
                 self.stats.run(), self.report.run(), self.storage.run()]
        if self.announcer is not None:
            loops.append(self.announcer.run())
        if self.read_inbox:
            loops.append(self._inbox_loop())
        await asyncio.gather(*loops)

    async def close(self) -> None:
        """After `run` is cancelled: stop the resyncs it started and the event batches."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.batcher.close()

    async def resync_all(self) -> None:
        """Ask every monitored host for its full state (after the broker connection is back)."""
        try:
            await self._resync_everything()
        except OperationalError as exc:
            log.warning("monitor cannot reach the database (%s); not resynchronising", exc.orig)

    # -- events ------------------------------------------------------------------------

    async def _inbox_loop(self) -> None:
        while True:
            try:
                batch = await inbox.take_batch(self.db)
                await self._apply_in_order([envelope for _row, envelope in batch
                                            if envelope is not None])
                if batch:
                    await inbox.forget(self.db, batch[-1][0])
            except OperationalError as exc:
                log.warning("monitor cannot reach the database (%s); retrying", exc.orig)
                batch = []
            if not batch:
                self.wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await self.wakeup.wait()

    async def _apply_in_order(self, envelopes: list[EventEnvelope]) -> None:
        """Events of the inbox, in one transaction; the inbox keeps each node's order, so a
        gap means lost events (apply and resync)."""
        sequenced = [(envelope, Gaps.RESYNC) for envelope in envelopes if envelope.seq]
        for envelope in envelopes:
            if envelope.seq is None:
                self.stats.add(envelope)
        if not sequenced:
            return
        async with self.db.transaction() as session:
            results = await apply_events(session, sequenced)
        for (envelope, _gaps), result in zip(sequenced, results, strict=True):
            if isinstance(result, Outcome):
                self._noted(envelope, result)

    # -- heartbeats --------------------------------------------------------------------

    async def _watchdog_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_check_s or self.tick_s)
            try:
                await self.check_heartbeats()
            except OperationalError as exc:
                log.warning("monitor cannot reach the database (%s); retrying", exc.orig)

    async def check_heartbeats(self) -> None:
        behind = self.report.behind_s()
        if behind > self.heartbeat_timeout.total_seconds() / 2:
            # A backlog of events is this monitor's own delay, not the hosts' silence:
            # judging them now would mark live hosts non responsive and their VMs unknown,
            # and the resyncs that follow would only deepen the backlog.
            if not self._judging_paused:
                log.warning("the monitor is %.0f s behind the nodes' events; hosts are not "
                            "judged on heartbeats until it catches up", behind)
            self._judging_paused = True
            return
        if self._judging_paused:
            log.info("the monitor has caught up with the nodes' events; judging heartbeats "
                     "again")
            self._judging_paused = False
        now = utcnow()
        deadline = now - self.heartbeat_timeout
        # A host never heard of yet is left alone: the resync loop is trying to reach it.
        silent_now = (Host.status.in_(_HEARD_FROM), Host.host_uuid.is_not(None),
                      (Host.last_heartbeat_at < deadline) | (
                          Host.last_heartbeat_at.is_(None)
                          & (Host.status != HostStatus.CONNECTING)))
        # Read first, with no lock: on a fleet that is heard nothing is silent, and a
        # transaction that locks nothing costs the event batches nothing.
        async with self.db.transaction() as session:
            candidates = (await session.execute(select(Host.id, Host.host_uuid).where(
                *silent_now))).all()
        ids = [host_id for host_id, host_uuid in candidates if self._owned(host_uuid)]
        if not ids:
            return
        async with self.db.transaction() as session:
            # Rows locked in id order, as the event batches lock them, and still silent
            # under the lock. A row another transaction holds is being written (a batch
            # applying its node's events): skipped, and judged next time if still silent.
            silent = (await session.execute(select(Host).where(
                Host.id.in_(ids), *silent_now).order_by(Host.id).with_for_update(
                skip_locked=True, key_share=True))).scalars().all()
            for host in silent:
                await judge_silent_host(session, host, now=now,
                                        heartbeat_timeout=self.heartbeat_timeout,
                                        defaults=self.fencing_defaults)

    # -- resynchronisation -------------------------------------------------------------

    async def _resync_everything(self) -> None:
        """After a (re)start nothing is trusted: every monitored host is asked for its state."""
        async with self.db.transaction() as session:
            await session.execute(
                update(Host).where(Host.status.in_(MONITORED),
                                   Host.host_uuid.is_not(None))
                .values(needs_resync=True).execution_options(synchronize_session=False))

    async def _resync_loop(self) -> None:
        while True:
            try:
                async with self.db.transaction() as session:
                    hosts = list((await session.execute(select(Host).options(load_only(
                        Host.id, Host.name, Host.host_uuid, Host.address, Host.port,
                        Host.certificate_fingerprint)).where(
                        Host.needs_resync.is_(True), Host.host_uuid.is_not(None),
                        Host.status.in_(MONITORED)
                    ))).scalars())
                # In another order each time: a host that cannot answer holds no one up.
                random.shuffle(hosts)
                for host in hosts:
                    if not self._owned(host.host_uuid):
                        continue
                    if host.name not in self._resyncing:
                        self._resyncing.add(host.name)
                        task = asyncio.create_task(self.resync(host))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
            except OperationalError as exc:
                log.warning("monitor cannot reach the database (%s); retrying", exc.orig)
            self._resync_wanted.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.tick_s):
                    await self._resync_wanted.wait()

    def _owned(self, host_uuid: uuid.UUID | None) -> bool:
        return host_uuid is not None and (self.owns is None or self.owns(host_uuid))

    def resync_soon(self) -> None:
        """A host was marked for resync (`needs_resync`) and committed: look now."""
        self._resync_wanted.set()

    async def resync(self, host: Host) -> None:
        try:
            async with self._resync_slots:
                await self._resync(host)
        finally:
            self._resyncing.discard(host.name)

    async def _pace(self) -> None:
        """Space the resyncs' node calls: RESYNC_RATE_PER_S, fewer while behind the events."""
        async with self._pacing:
            loop = asyncio.get_running_loop()
            rate = self.resync_rate_per_s if self.report.behind_s() < RESYNC_BEHIND_S \
                else min(self.resync_rate_per_s, RESYNC_RATE_BEHIND_PER_S)
            wait = self._last_resync_at + 1 / rate - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_resync_at = loop.time()

    async def _resync(self, host: Host) -> None:
        """Ask the node for its full state (no transaction open meanwhile), then apply it
        through the event queue (`EventBatcher.resync`), after the host's events queued
        before it: they never meet on the host's row."""
        async with self.db.transaction() as session:
            wanted = (await session.execute(select(Host.needs_resync).where(
                Host.id == host.id))).scalar_one_or_none()
        if not wanted or host.host_uuid is None:
            return  # another monitor did it meanwhile
        await self._pace()
        self.resyncs += 1
        self.report.resynced()
        try:
            state = await self.nodes.call(host, HostStateCommand(), timeout_s=20)
        except (TransportError, NodeCommandFailed) as exc:
            # Said once per host and reason at info level: the monitor asks every tick.
            level = logging.DEBUG if self._unreachable.get(host.name) == str(exc) else logging.INFO
            self._unreachable[host.name] = str(exc)
            log.log(level, "host %s: cannot fetch its state yet (%s)", host.name, exc,
                    extra={"host": host.name})
            return
        self._unreachable.pop(host.name, None)
        for delay in (*RESYNC_BUSY_RETRIES_S, None):
            try:
                outcome = await self.batcher.resync(host.host_uuid, state)
                break
            except HostBusy:
                self.report.resync_refused()
                if delay is None:  # still marked: the resync loop asks again
                    log.info("host %s: its row stayed held by another transaction; its "
                             "state is asked for again", host.name, extra={"host": host.name})
                    return
                await asyncio.sleep(delay)
        if outcome is not Outcome.APPLIED:
            return  # STALE: asked again (marked); UNKNOWN_HOST: removed meanwhile
        self._changed(None)
        log.info("host %s resynchronised: %d VMs", host.name, len(state.vms),
                 extra={"host": host.name})

    # -- housekeeping --------------------------------------------------------------------

    async def _housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(60)
            try:
                async with self.db.transaction() as session:
                    await downsample(session)
                async with self.db.transaction() as session:
                    await change_log.prune(session)
            except OperationalError as exc:
                log.warning("stats downsampling or pruning the change log failed (%s)",
                            exc.orig)
