"""The monitor's loops: apply events, watch heartbeats, resynchronise hosts, keep stats tidy."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import uuid

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
from overt.engine.monitor.reconcile import reconcile
from overt.engine.monitor.report import MonitorReport
from overt.engine.monitor.stats_writer import StatsWriter
from overt.engine.monitor.storage_reach import StorageReachMonitor
from overt.engine.nodes import NodeClient, NodeCommandFailed
from overt.engine.secrets import SecretBox
from overt.protocol import EventEnvelope
from overt.protocol.boots import is_earlier_boot
from overt.protocol.commands import HostStateCommand
from overt.protocol.events import HostStateReport, VmLifecycle
from overt.protocol.host import HostState

log = logging.getLogger(__name__)

# How long an event may wait for its predecessor before the monitor stops waiting,
# applies it and resynchronises the host (the predecessor was lost, e.g. purged from
# the broker). In normal operation a predecessor arrives within milliseconds.
EARLY_PATIENCE_S = 60.0
# Resyncs a monitor runs at once: after a broker or engine restart a whole fleet needs one.
RESYNC_CONCURRENCY = 16
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
                 heartbeat_check_s: float | None = None) -> None:
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
        async with self.db.transaction() as session:
            # A host never heard of yet is left alone: the resync loop is trying to reach it.
            # Rows are locked in id order, as the event batches lock them.
            silent = (await session.execute(select(Host).where(
                Host.status.in_(_HEARD_FROM), Host.host_uuid.is_not(None),
                (Host.last_heartbeat_at < deadline) | (
                    Host.last_heartbeat_at.is_(None)
                    & (Host.status != HostStatus.CONNECTING)))
                .order_by(Host.id).with_for_update())).scalars().all()
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
                # Several monitors work through the same hosts: in another order each.
                random.shuffle(hosts)
                for host in hosts:
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

    def resync_soon(self) -> None:
        """A host was marked for resync (`needs_resync`) and committed: look now."""
        self._resync_wanted.set()

    async def resync(self, host: Host) -> None:
        try:
            async with self._resync_slots:
                await self._resync(host)
        finally:
            self._resyncing.discard(host.name)

    async def _resync(self, host: Host) -> None:
        async with self.db.transaction() as session:
            wanted = (await session.execute(select(Host.needs_resync).where(
                Host.id == host.id))).scalar_one_or_none()
        if not wanted:
            return  # another monitor did it meanwhile
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
        async with self.db.transaction() as session:
            fresh = (await session.execute(select(Host).where(Host.id == host.id)
                                           .with_for_update())).scalar_one_or_none()
            if fresh is None:
                return
            if not _take_position(fresh, state):
                log.info("host %s: events newer than its state report were applied "
                         "meanwhile; asking again", host.name, extra={"host": host.name})
                fresh.needs_resync = True
                return
            log.debug("host %s: applying its state at event %d (%d VMs)", host.name, state.seq,
                      len(state.vms), extra={"host": host.name, "seq": state.seq})
            await reconcile(session, fresh, state)
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


def _take_position(host: Host, state: HostState) -> bool:
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
