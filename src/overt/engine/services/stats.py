"""Statistics of hosts and VMs: current values (oVirt's names) and history for graphs."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Host, StatsSample, Vm, utcnow
from overt.engine.model.errors import InvalidInput
from overt.engine.monitor.downsample import EPOCH, bucket_start

MIB = 1 << 20
MAX_RANGE = dt.timedelta(days=7)
MAX_POINTS = 2000
Subject = Literal["host", "vm"]


@dataclass(frozen=True)
class Statistic:
    """One current value, as oVirt names and types it (`cpu.current.total`, percent, ...)."""

    name: str
    description: str
    kind: str  # gauge | counter
    type: str  # integer | decimal
    unit: str  # percent | bytes | bytes_per_second | ...
    value: float | int


@dataclass(frozen=True)
class HistoryPoint:
    time: dt.datetime
    cpu_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    net_rx_bps: float
    net_tx_bps: float


@dataclass(frozen=True)
class History:
    subject_type: Subject
    subject_id: uuid.UUID
    since: dt.datetime
    until: dt.datetime
    resolution_s: int
    points: list[HistoryPoint]


def statistic_id(subject_id: uuid.UUID, name: str) -> uuid.UUID:
    """Statistics have stable ids, derived from their subject and name."""
    return uuid.uuid5(subject_id, name)


def vm_statistics(vm: Vm) -> list[Statistic]:
    installed = vm.memory_mib * MIB
    used = min(vm.memory_used_mib * MIB, installed) if installed else vm.memory_used_mib * MIB
    running = vm.host_id is not None
    elapsed = (utcnow() - vm.start_time).total_seconds() if running and vm.start_time else 0
    return [
        Statistic("memory.installed", "Total memory configured", "gauge", "integer", "bytes",
                  installed),
        Statistic("memory.used", "Memory used (agent)", "gauge", "integer", "bytes",
                  used if running else 0),
        Statistic("memory.free", "Memory free (agent)", "gauge", "integer", "bytes",
                  max(installed - used, 0) if running else installed),
        Statistic("cpu.current.guest", "CPU used by guest", "gauge", "decimal", "percent",
                  vm.cpu_percent if running else 0.0),
        Statistic("cpu.current.hypervisor", "CPU overhead", "gauge", "decimal", "percent", 0.0),
        Statistic("cpu.current.total", "Total CPU used", "gauge", "decimal", "percent",
                  vm.cpu_percent if running else 0.0),
        Statistic("network.current.total", "Network traffic received and sent", "counter",
                  "integer", "bytes", vm.net_rx_bytes + vm.net_tx_bytes if running else 0),
        Statistic("elapsed.time", "Time since the VM started", "gauge", "integer", "seconds",
                  int(elapsed)),
    ]


def host_statistics(host: Host, *, memory_used_mib: int | None = None) -> list[Statistic]:
    total = host.memory_mib * MIB
    free = host.free_memory_mib * MIB
    used = memory_used_mib * MIB if memory_used_mib is not None else max(total - free, 0)
    return [
        Statistic("memory.total", "Total memory", "gauge", "integer", "bytes", total),
        Statistic("memory.used", "Used memory", "gauge", "integer", "bytes", used),
        Statistic("memory.free", "Free memory", "gauge", "integer", "bytes", free),
        Statistic("cpu.current.total", "Total CPU used", "gauge", "decimal", "percent",
                  host.cpu_percent),
        Statistic("cpu.current.idle", "Idle CPU", "gauge", "decimal", "percent",
                  max(100.0 - host.cpu_percent, 0.0)),
    ]


async def latest_sample(session: AsyncSession, subject_id: uuid.UUID) -> StatsSample | None:
    return (await session.execute(
        select(StatsSample).where(StatsSample.subject_id == subject_id)
        .order_by(StatsSample.time.desc()).limit(1))).scalars().first()


def parse_since(raw: str | None, now: dt.datetime) -> dt.datetime:
    """`from`: an ISO 8601 time, or seconds before now as a negative number (-3600)."""
    if raw is None or raw == "":
        return now - dt.timedelta(hours=1)
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        return now - dt.timedelta(seconds=abs(seconds)) if seconds <= 0 \
            else EPOCH + dt.timedelta(seconds=seconds)
    try:
        moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"from must be an ISO 8601 time or a negative number of seconds, "
                           f"not {raw!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def choose_resolution(since: dt.datetime, until: dt.datetime, asked: int | None) -> int:
    """The bucket size in seconds: as asked (0: the stored rows), else one that fits MAX_POINTS."""
    span = max((until - since).total_seconds(), 1.0)
    if asked is not None:
        if asked < 0:
            raise InvalidInput(f"resolution must be a number of seconds, not {asked}")
        if asked and span / asked > MAX_POINTS:
            raise InvalidInput(f"resolution {asked} s gives more than {MAX_POINTS} points "
                               f"over {int(span)} s; ask for a coarser one")
        return asked
    if span <= 3600:
        return 0
    return next((c for c in (60, 600) if span / c <= MAX_POINTS), 3600)


async def history(session: AsyncSession, subject_type: Subject, subject_id: uuid.UUID, *,
                  since: dt.datetime, until: dt.datetime | None = None,
                  resolution_s: int | None = None) -> History:
    """Samples of one host or VM between `since` and `until`, averaged per bucket.

    Resolution 0 gives the stored rows as they are (raw for the last hour, averages
    before); any other resolution averages them into buckets of that many seconds.
    """
    until = until or utcnow()
    if since >= until:
        raise InvalidInput("from must be before to")
    if until - since > MAX_RANGE:
        since = until - MAX_RANGE
    resolution = choose_resolution(since, until, resolution_s)
    rows = (await session.execute(
        select(StatsSample).where(StatsSample.subject_type == subject_type,
                                  StatsSample.subject_id == subject_id,
                                  StatsSample.time >= since, StatsSample.time <= until)
        .order_by(StatsSample.time))).scalars().all()
    if resolution == 0:
        points = [_point(row.time, [row]) for row in rows]
    else:
        buckets: dict[dt.datetime, list[StatsSample]] = defaultdict(list)
        for row in rows:
            buckets[bucket_start(row.time, resolution)].append(row)
        points = [_point(start, group) for start, group in sorted(buckets.items())]
    return History(subject_type, subject_id, since, until, resolution, points)


def _point(time: dt.datetime, rows: list[StatsSample]) -> HistoryPoint:
    n = len(rows)
    return HistoryPoint(
        time=time, cpu_percent=round(sum(r.cpu_percent for r in rows) / n, 2),
        memory_used_bytes=round(sum(r.memory_used_mib for r in rows) / n) * MIB,
        memory_total_bytes=round(sum(r.memory_total_mib for r in rows) / n) * MIB,
        net_rx_bps=round(sum(r.net_rx_bps for r in rows) / n, 1),
        net_tx_bps=round(sum(r.net_tx_bps for r in rows) / n, 1))
