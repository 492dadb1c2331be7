"""Stats history that ages gracefully: raw samples for an hour, then averages.

Each tier rolls its rows into the next, coarser tier when they leave its window:
raw samples (kept 1 h) become 1-minute averages (kept 24 h), which become 10-minute
averages (kept 7 days), which are then deleted. A row exists in one tier only, so a
history query over any range reads every tier without counting a moment twice.
Cut-offs are aligned to the coarser tier's buckets, so a bucket is rolled up whole.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import StatsSample, utcnow

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
BATCH = 5000


@dataclass(frozen=True)
class Tier:
    resolution_s: int  # 0: raw samples
    keep: dt.timedelta  # how long rows of this tier stay before rolling up (or going)


TIERS = (
    Tier(0, dt.timedelta(hours=1)),
    Tier(60, dt.timedelta(hours=24)),
    Tier(600, dt.timedelta(days=7)),
)


def bucket_start(moment: dt.datetime, seconds: int) -> dt.datetime:
    """The start of the `seconds`-long bucket (aligned to the epoch) holding `moment`."""
    offset = (moment - EPOCH).total_seconds()
    return EPOCH + dt.timedelta(seconds=offset - offset % seconds)


@dataclass
class _Sums:
    count: int = 0
    cpu: float = 0.0
    memory_used: float = 0.0
    memory_total: float = 0.0
    rx: float = 0.0
    tx: float = 0.0

    def add(self, row: StatsSample) -> None:
        self.count += 1
        self.cpu += row.cpu_percent
        self.memory_used += row.memory_used_mib
        self.memory_total += row.memory_total_mib
        self.rx += row.net_rx_bps
        self.tx += row.net_tx_bps


async def _roll_up(session: AsyncSession, source: Tier, target: Tier, now: dt.datetime) -> int:
    """Average `source` rows older than its window into `target` buckets; return rows read."""
    cutoff = bucket_start(now - source.keep, target.resolution_s)
    done = 0
    while True:
        rows = (await session.execute(
            select(StatsSample).where(StatsSample.resolution_s == source.resolution_s,
                                      StatsSample.time < cutoff)
            .order_by(StatsSample.id).limit(BATCH))).scalars().all()
        if not rows:
            return done
        sums: dict[tuple[str, uuid.UUID, dt.datetime], _Sums] = defaultdict(_Sums)
        for row in rows:
            sums[(row.subject_type, row.subject_id,
                  bucket_start(row.time, target.resolution_s))].add(row)
        for (subject_type, subject_id, start), total in sums.items():
            n = total.count
            session.add(StatsSample(
                subject_type=subject_type, subject_id=subject_id, time=start,
                resolution_s=target.resolution_s, cpu_percent=total.cpu / n,
                memory_used_mib=round(total.memory_used / n),
                memory_total_mib=round(total.memory_total / n),
                net_rx_bps=total.rx / n, net_tx_bps=total.tx / n))
        await session.execute(delete(StatsSample).where(StatsSample.id.in_([r.id for r in rows])))
        await session.flush()
        done += len(rows)
        if len(rows) < BATCH:
            return done


async def downsample(session: AsyncSession, now: dt.datetime | None = None) -> None:
    """One housekeeping pass: roll each tier into the next, drop what the last one outlived."""
    now = now or utcnow()
    for source, target in itertools.pairwise(TIERS):
        await _roll_up(session, source, target, now)
    last = TIERS[-1]
    await session.execute(delete(StatsSample).where(
        StatsSample.resolution_s == last.resolution_s, StatsSample.time < now - last.keep))
