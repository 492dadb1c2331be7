"""Stats samples into the database in bulk: one transaction a second for the whole fleet.

Samples are lossy by contract (a node sends one every 15 s and any may be dropped),
so the monitor keeps the newest sample of each host in memory and writes them all
together: a thousand nodes cost one short transaction a second instead of a
thousand. A sample that cannot be written is dropped, never retried.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from overt.engine import audit
from overt.engine.db import bulk
from overt.engine.db.database import Database
from overt.engine.db.tables import Host, StatsSample, Vm, utcnow
from overt.engine.model.host_actions import MONITORED
from overt.engine.model.status import LogSeverity
from overt.engine.monitor.lease_reports import record_lease_report
from overt.protocol import EventEnvelope
from overt.protocol.events import StatsSample as StatsEvent
from overt.protocol.host import VmStats as VmStatsSample

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0


class StatsWriter:
    """Collects stats samples (`add`) and writes them in bulk every `interval_s` (`run`)."""

    def __init__(self, db: Database, *, interval_s: float = FLUSH_INTERVAL_S,
                 on_written: Callable[[list[float]], None] | None = None) -> None:
        self.db = db
        self.interval_s = interval_s
        self.on_written = on_written  # told when the samples it wrote were sent
        self._pending: dict[uuid.UUID, StatsEvent] = {}
        self._sent_at: dict[uuid.UUID, float] = {}
        self._refused: set[tuple[uuid.UUID, uuid.UUID]] = set()  # (host, VM), audited
        self.written = 0
        self.dropped = 0

    def add(self, envelope: EventEnvelope) -> None:
        """Keep the sample for the next write (a newer one of the same host replaces it)."""
        if not isinstance(envelope.event, StatsEvent):
            raise ValueError(f"{envelope.event.type} is not a stats sample")
        if envelope.host_uuid in self._pending:
            self.dropped += 1
        self._pending[envelope.host_uuid] = envelope.event
        self._sent_at[envelope.host_uuid] = envelope.sent_at

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.flush()

    async def flush(self) -> None:
        """Write what was collected; on a database error the batch is dropped (lossy)."""
        batch, self._pending = self._pending, {}
        sent_at, self._sent_at = self._sent_at, {}
        if not batch:
            return
        try:
            async with self.db.transaction() as session:
                written = await _write(session, batch, self._refused)
        except DBAPIError as exc:
            self.dropped += len(batch)
            log.warning("dropped the stats of %d host(s): the database refused them (%s)",
                        len(batch), exc.orig)
            return
        self.written += len(written)
        if self.on_written is not None:
            self.on_written([sent_at[host] for host in written])


async def _write(session: Any, batch: dict[uuid.UUID, StatsEvent],
                 audited: set[tuple[uuid.UUID, uuid.UUID]]) -> list[uuid.UUID]:
    """Write the samples of monitored hosts (of their own VMs only); returns those hosts."""
    hosts = (await session.execute(select(
        Host.id, Host.host_uuid, Host.cpu_percent, Host.free_memory_mib, Host.memory_mib).where(
        bulk.among(session, Host.host_uuid, batch), Host.status.in_(MONITORED)))).all()
    if not hosts:
        return []
    now = utcnow()
    host_rows: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    vm_samples: dict[uuid.UUID, tuple[VmStatsSample, float, uuid.UUID]] = {}
    for host_id, host_uuid, cpu_before, free_before, total_before in hosts:
        stats = batch[host_uuid].host
        leases = batch[host_uuid].leases
        if leases is not None:
            await record_lease_report(session, host_id, leases)
        # Total and free from the same sample, so a host's memory facts never disagree.
        # A row the sample leaves as it is is not written (its history sample is).
        if (cpu_before, free_before, total_before) != (
                stats.cpu_percent, stats.memory_free_mib, stats.memory_total_mib):
            host_rows.append({"id": host_id, "cpu_percent": stats.cpu_percent,
                              "free_memory_mib": stats.memory_free_mib,
                              "memory_mib": stats.memory_total_mib})
        samples.append({
            "subject_type": "host", "subject_id": host_id, "time": now, "resolution_s": 0,
            "cpu_percent": stats.cpu_percent, "memory_used_mib": stats.memory_used_mib,
            "memory_total_mib": stats.memory_total_mib,
            "net_rx_bps": sum(n.rx_rate_bps for n in stats.nics),
            "net_tx_bps": sum(n.tx_rate_bps for n in stats.nics)})
        interval = max(batch[host_uuid].interval_s, 1.0)
        for sample in batch[host_uuid].vms:
            if sample.vm_id is not None:
                vm_samples[sample.vm_id] = (sample, interval, host_id)
    vm_rows: list[dict[str, Any]] = []
    refused: list[tuple[uuid.UUID, uuid.UUID]] = []
    if vm_samples:
        known = (await session.execute(select(
            Vm.id, Vm.memory_mib, Vm.net_rx_bytes, Vm.net_tx_bytes, Vm.host_id, Vm.cpu_percent,
            Vm.memory_used_mib).where(bulk.among(session, Vm.id, vm_samples)))).all()
        for vm_id, memory_mib, rx_before, tx_before, on_host, cpu_before, used_before in known:
            sample, interval, reporter = vm_samples[vm_id]
            if on_host != reporter:
                refused.append((reporter, vm_id))
                continue
            row = {"id": vm_id, "cpu_percent": sample.cpu_percent,
                   "memory_used_mib": sample.memory_mib, "net_rx_bytes": sample.net_rx_bytes,
                   "net_tx_bytes": sample.net_tx_bytes}
            if (cpu_before, used_before, rx_before, tx_before) != (
                    row["cpu_percent"], row["memory_used_mib"], row["net_rx_bytes"],
                    row["net_tx_bytes"]):
                vm_rows.append(row)
            samples.append({
                "subject_type": "vm", "subject_id": vm_id, "time": now, "resolution_s": 0,
                "cpu_percent": sample.cpu_percent, "memory_used_mib": sample.memory_mib,
                "memory_total_mib": memory_mib,
                "net_rx_bps": max(0, sample.net_rx_bytes - rx_before) / interval,
                "net_tx_bps": max(0, sample.net_tx_bytes - tx_before) / interval})
    # The history and the audit first: they lock no row the event batches want. The rows
    # of hosts and VMs last, just before the commit, so they are held for two statements
    # and a commit (an event batch wanting one of those hosts finds it busy meanwhile);
    # hosts before VMs and each in one order (by id), as the batches lock them, so that
    # two writers never deadlock.
    await bulk.insert_rows(session, bulk.table_of(StatsSample), samples)
    _audit_refused(session, refused, audited)
    await session.flush()
    if host_rows or vm_rows:
        # Never wait for a row: those another transaction holds (an event batch writing
        # the host) keep their values this time, with their VMs' (samples are lossy; the
        # history has them). Waiting would hold the rows locked so far, and batches would
        # find those hosts busy meanwhile. Locked in id order, as the batches lock them.
        reporters = {host_id for _sample, _interval, host_id in vm_samples.values()}
        free = set((await session.execute(select(Host.id).where(bulk.among(
            session, Host.id, {row["id"] for row in host_rows} | reporters)).order_by(Host.id)
            .with_for_update(skip_locked=True, key_share=True))).scalars())
        host_rows = [row for row in host_rows if row["id"] in free]
        vm_rows = [row for row in vm_rows if vm_samples[row["id"]][2] in free]
    if any(row["memory_mib"] <= 0 for row in host_rows):  # a sample without a total
        host_rows = [{k: v for k, v in row.items() if k != "memory_mib"} for row in host_rows]
    by_id = lambda row: str(row["id"])  # noqa: E731
    await bulk.update_by_id(session, bulk.table_of(Host), sorted(host_rows, key=by_id))
    await bulk.update_by_id(session, bulk.table_of(Vm), sorted(vm_rows, key=by_id))
    return [row.host_uuid for row in hosts]


AUDITED_MAX = 10_000


def _audit_refused(session: Any, refused: list[tuple[uuid.UUID, uuid.UUID]],
                   audited: set[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Stats of a VM that runs elsewhere (or nowhere) are dropped, and audited once per
    (host, VM) and writer: a node sends stats every 15 s, one audit row says it all."""
    for host_id, vm_id in refused:
        if (host_id, vm_id) in audited:
            continue
        if len(audited) >= AUDITED_MAX:
            audited.clear()
        audited.add((host_id, vm_id))
        log.warning("stats of VM %s from host %s refused: the VM is not on that host", vm_id,
                    host_id, extra={"host_id": host_id, "vm_id": vm_id})
        audit.record(session, f"A host sent statistics of VM {vm_id}, which does not run on "
                     "it; they were refused", code=audit.NODE_REPORT_REFUSED,
                     severity=LogSeverity.WARNING, vm_id=vm_id, host_id=host_id)
