"""Applying one node event to the database, in per-node sequence order."""

from __future__ import annotations

import logging
from enum import Enum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Host, StatsSample, Vm, utcnow
from overt.engine.model.status import HostStatus
from overt.engine.monitor.reconcile import apply_vm_report, mark_host_up, reconcile
from overt.protocol import EventEnvelope
from overt.protocol.events import Heartbeat, HostStateReport, VmLifecycle
from overt.protocol.events import StatsSample as StatsEvent

log = logging.getLogger(__name__)

_ACTIVE = {HostStatus.UP.value, HostStatus.CONNECTING.value, HostStatus.NON_RESPONSIVE.value,
           HostStatus.INITIALIZING.value}


class Outcome(Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # already applied (at-least-once delivery)
    UNKNOWN_HOST = "unknown_host"
    IGNORED = "ignored"  # e.g. the host is in maintenance


async def host_of(session: AsyncSession, envelope: EventEnvelope) -> Host | None:
    stmt = select(Host).where(Host.host_uuid == envelope.host_uuid)
    if envelope.seq is not None:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def apply_event(session: AsyncSession, envelope: EventEnvelope) -> Outcome:
    host = await host_of(session, envelope)
    if host is None:
        return Outcome.UNKNOWN_HOST
    event = envelope.event
    if envelope.seq is None:
        if isinstance(event, StatsEvent) and host.status in _ACTIVE:
            await _apply_stats(session, host, event)
            return Outcome.APPLIED
        return Outcome.IGNORED
    if host.boot_id != envelope.boot_id:
        # A new agent run: its events start again at 1, and its first event is a full report.
        host.boot_id, host.last_seq = envelope.boot_id, 0
        if not isinstance(event, HostStateReport):
            host.needs_resync = True
    elif envelope.seq <= host.last_seq:
        return Outcome.DUPLICATE
    elif envelope.seq > host.last_seq + 1:
        log.warning("host %s: events %d..%d were lost; resynchronising", host.name,
                    host.last_seq + 1, envelope.seq - 1)
        host.needs_resync = True
    host.last_seq = envelope.seq
    if host.status not in _ACTIVE:
        return Outcome.IGNORED  # maintenance, pending approval, ...: not monitored
    if isinstance(event, HostStateReport):
        await reconcile(session, host, event.state)
    elif isinstance(event, VmLifecycle):
        await apply_vm_report(session, host, event.vm)
        host.last_heartbeat_at = utcnow()
    elif isinstance(event, Heartbeat):
        if host.status != HostStatus.UP.value:
            host.needs_resync = True
        mark_host_up(session, host)
        host.free_memory_mib = event.free_memory_mib
    return Outcome.APPLIED


async def _apply_stats(session: AsyncSession, host: Host, event: StatsEvent) -> None:
    now = utcnow()
    stats = event.host
    host.cpu_percent = stats.cpu_percent
    host.free_memory_mib = stats.memory_free_mib
    rx = sum(n.rx_rate_bps for n in stats.nics)
    tx = sum(n.tx_rate_bps for n in stats.nics)
    session.add(StatsSample(subject_type="host", subject_id=host.id, time=now,
                            cpu_percent=stats.cpu_percent, memory_used_mib=stats.memory_used_mib,
                            memory_total_mib=stats.memory_total_mib, net_rx_bps=rx, net_tx_bps=tx))
    ids = [s.vm_id for s in event.vms if s.vm_id is not None]
    vms = {vm.id: vm for vm in (await session.execute(select(Vm).where(Vm.id.in_(ids)))).scalars()}
    for sample in event.vms:
        vm = vms.get(sample.vm_id) if sample.vm_id is not None else None
        if vm is None:
            continue
        interval = max(event.interval_s, 1.0)
        rx_rate = max(0, sample.net_rx_bytes - vm.net_rx_bytes) / interval
        tx_rate = max(0, sample.net_tx_bytes - vm.net_tx_bytes) / interval
        vm.cpu_percent, vm.memory_used_mib = sample.cpu_percent, sample.memory_mib
        vm.net_rx_bytes, vm.net_tx_bytes = sample.net_rx_bytes, sample.net_tx_bytes
        session.add(StatsSample(subject_type="vm", subject_id=vm.id, time=now,
                                cpu_percent=sample.cpu_percent, memory_used_mib=sample.memory_mib,
                                memory_total_mib=vm.memory_mib, net_rx_bps=rx_rate,
                                net_tx_bps=tx_rate))
