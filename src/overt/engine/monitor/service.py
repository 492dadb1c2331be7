"""The monitor's loops: apply events, watch heartbeats, resynchronise hosts, keep stats tidy."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from overt.bus.base import TransportError
from overt.engine.db.database import Database
from overt.engine.db.tables import Host, Vm, utcnow
from overt.engine.model.node_states import ON_HOST
from overt.engine.model.status import HostStatus, LogSeverity, VmStatus
from overt.engine.monitor import inbox
from overt.engine.monitor.apply import Outcome, apply_event
from overt.engine.monitor.downsample import downsample
from overt.engine.monitor.reconcile import reconcile
from overt.engine.nodes import NodeClient, NodeCommandFailed
from overt.engine.services import audit
from overt.protocol import EventEnvelope
from overt.protocol.commands import HostStateCommand
from overt.protocol.host import HostState

log = logging.getLogger(__name__)

_WATCHED = (HostStatus.UP.value, HostStatus.CONNECTING.value, HostStatus.INITIALIZING.value)


class Monitor:
    def __init__(self, db: Database, nodes: NodeClient, *, heartbeat_timeout_s: float,
                 read_inbox: bool = True, wakeup: asyncio.Event | None = None,
                 tick_s: float = 1.0) -> None:
        self.db = db
        self.nodes = nodes
        self.heartbeat_timeout = dt.timedelta(seconds=heartbeat_timeout_s)
        self.read_inbox = read_inbox
        self.wakeup = wakeup or asyncio.Event()
        self.tick_s = tick_s
        self._resyncing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def apply(self, envelope: EventEnvelope) -> None:
        """The EventSink of transports that deliver to the monitor itself (amqp)."""
        async with self.db.transaction() as session:
            outcome = await apply_event(session, envelope)
        if outcome is Outcome.UNKNOWN_HOST:
            log.warning("event from unknown node %s dropped", envelope.host_uuid)

    async def run(self) -> None:
        await self._resync_everything()
        loops = [self._watchdog_loop(), self._resync_loop(), self._housekeeping_loop()]
        if self.read_inbox:
            loops.append(self._inbox_loop())
        await asyncio.gather(*loops)

    # -- events ------------------------------------------------------------------------

    async def _inbox_loop(self) -> None:
        while True:
            try:
                batch = await inbox.take_batch(self.db)
                for row_id, envelope in batch:
                    if envelope is not None:
                        await self.apply(envelope)
                    await inbox.forget(self.db, row_id)
            except OperationalError as exc:
                log.warning("monitor cannot reach the database (%s); retrying", exc.orig)
                batch = []
            if not batch:
                self.wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await self.wakeup.wait()

    # -- heartbeats --------------------------------------------------------------------

    async def _watchdog_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                await self.check_heartbeats()
            except OperationalError as exc:
                log.warning("monitor cannot reach the database (%s); retrying", exc.orig)

    async def check_heartbeats(self) -> None:
        deadline = utcnow() - self.heartbeat_timeout
        async with self.db.transaction() as session:
            silent = (await session.execute(select(Host).where(
                Host.status.in_(_WATCHED),
                (Host.last_heartbeat_at < deadline) | Host.last_heartbeat_at.is_(None),
                Host.host_uuid.is_not(None)).with_for_update())).scalars().all()
            for host in silent:
                if host.status == HostStatus.CONNECTING.value and host.last_heartbeat_at is None:
                    continue  # never heard of yet: the resync loop is trying to reach it
                log.warning("host %s sent no heartbeat for %s: non responsive", host.name,
                            self.heartbeat_timeout)
                host.status = HostStatus.NON_RESPONSIVE.value
                host.status_detail = f"no heartbeat for {int(self.heartbeat_timeout.total_seconds())} s"
                audit.record(session, f"Host {host.name} is not responding",
                             code=audit.HOST_NON_RESPONSIVE, severity=LogSeverity.ERROR,
                             host_id=host.id, cluster_id=host.cluster_id)
                await session.execute(
                    update(Vm).where(Vm.host_id == host.id,
                                     Vm.status.in_([s.value for s in ON_HOST]))
                    .values(status=VmStatus.UNKNOWN.value)
                    .execution_options(synchronize_session=False))

    # -- resynchronisation -------------------------------------------------------------

    async def _resync_everything(self) -> None:
        """After a (re)start nothing is trusted: every monitored host is asked for its state."""
        async with self.db.transaction() as session:
            await session.execute(
                update(Host).where(Host.status.in_([*_WATCHED, HostStatus.NON_RESPONSIVE.value]),
                                   Host.host_uuid.is_not(None))
                .values(needs_resync=True).execution_options(synchronize_session=False))

    async def _resync_loop(self) -> None:
        while True:
            try:
                async with self.db.transaction() as session:
                    hosts = (await session.execute(select(Host).where(
                        Host.needs_resync.is_(True), Host.host_uuid.is_not(None),
                        Host.status.in_([*_WATCHED, HostStatus.NON_RESPONSIVE.value])
                    ))).scalars().all()
                for host in hosts:
                    if host.name not in self._resyncing:
                        self._resyncing.add(host.name)
                        task = asyncio.create_task(self.resync(host))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
            except OperationalError as exc:
                log.warning("monitor cannot reach the database (%s); retrying", exc.orig)
            await asyncio.sleep(self.tick_s)

    async def resync(self, host: Host) -> None:
        try:
            state = await self.nodes.call(host, HostStateCommand(), HostState, timeout_s=20)
        except (TransportError, NodeCommandFailed) as exc:
            log.info("host %s: cannot fetch its state yet (%s)", host.name, exc)
            return
        finally:
            self._resyncing.discard(host.name)
        async with self.db.transaction() as session:
            fresh = (await session.execute(select(Host).where(Host.id == host.id)
                                           .with_for_update())).scalar_one_or_none()
            if fresh is None:
                return
            await reconcile(session, fresh, state)
            fresh.last_seq = max(fresh.last_seq, state.seq)
        log.info("host %s resynchronised: %d VMs", host.name, len(state.vms))

    # -- housekeeping --------------------------------------------------------------------

    async def _housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(60)
            try:
                async with self.db.transaction() as session:
                    await downsample(session)
            except OperationalError as exc:
                log.warning("stats downsampling failed (%s)", exc.orig)
