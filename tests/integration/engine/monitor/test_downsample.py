"""Stats history downsampling on a real database: tiers roll up whole buckets, once."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import func, insert, select

from overt.engine.db.database import Database
from overt.engine.db.tables import StatsSample
from overt.engine.monitor.downsample import bucket_start, downsample
from overt.engine.services import stats

NOW = dt.datetime(2026, 5, 4, 12, 0, 7, tzinfo=dt.UTC)
VM = uuid.UUID(int=7)


def _raw(moment: dt.datetime, cpu: float) -> StatsSample:
    return StatsSample(subject_type="vm", subject_id=VM, time=moment, resolution_s=0,
                       cpu_percent=cpu, memory_used_mib=100, memory_total_mib=256,
                       net_rx_bps=10.0, net_tx_bps=20.0)


async def _rows(db: Database, resolution: int) -> list[StatsSample]:
    async with db.transaction() as session:
        return list((await session.execute(
            select(StatsSample).where(StatsSample.resolution_s == resolution)
            .order_by(StatsSample.time))).scalars())


async def test_raw_samples_older_than_an_hour_become_minute_averages(db: Database) -> None:
    start = NOW - dt.timedelta(hours=3)
    async with db.transaction() as session:
        for i in range(3 * 240):  # every 15 s for three hours; cpu = minute of the hour
            moment = start + dt.timedelta(seconds=15 * i)
            session.add(_raw(moment, float(moment.minute) + (i % 4)))
    async with db.transaction() as session:
        await downsample(session, NOW)

    cutoff = bucket_start(NOW - dt.timedelta(hours=1), 60)
    raw = await _rows(db, 0)
    minutes = await _rows(db, 60)
    assert raw and min(r.time for r in raw) >= cutoff
    assert max(m.time for m in minutes) < cutoff
    assert len({m.time for m in minutes}) == len(minutes)  # one row per bucket
    # Each full minute held four samples with cpu minute+0..3: their average is minute+1.5.
    full = [m for m in minutes if m.time > start]
    assert all(m.cpu_percent == pytest.approx(m.time.minute + 1.5) for m in full)
    assert all(m.memory_total_mib == 256 and m.net_tx_bps == pytest.approx(20.0) for m in full)

    async with db.transaction() as session:  # a second pass changes nothing
        await downsample(session, NOW)
    assert len(await _rows(db, 60)) == len(minutes)
    assert len(await _rows(db, 0)) == len(raw)

    async with db.transaction() as session:  # history reads both tiers, each moment once
        found = await stats.history(session, "vm", VM, since=start, until=NOW, resolution_s=600)
    assert found.resolution_s == 600
    assert len(found.points) == 18  # 3 h of 10-minute buckets
    assert [p.time for p in found.points] == sorted({p.time for p in found.points})


async def test_minutes_become_ten_minute_averages_and_a_week_is_kept(db: Database) -> None:
    moments = [bucket_start(NOW - dt.timedelta(minutes=minutes_ago), 60)
               for minutes_ago in range(0, 9 * 24 * 60, 1)]
    async with db.transaction() as session:  # nine days of minutes, in one statement
        await session.execute(insert(StatsSample), [
            {"subject_type": "vm", "subject_id": VM, "time": moment, "resolution_s": 60,
             "cpu_percent": float(moment.minute % 10), "memory_used_mib": 1,
             "memory_total_mib": 2}
            for moment in moments if moment < NOW - dt.timedelta(hours=1)])
    async with db.transaction() as session:
        await downsample(session, NOW)
    minutes = await _rows(db, 60)
    tens = await _rows(db, 600)
    assert min(m.time for m in minutes) >= bucket_start(NOW - dt.timedelta(hours=24), 600)
    assert tens and min(t.time for t in tens) >= NOW - dt.timedelta(days=7)
    assert max(t.time for t in tens) < bucket_start(NOW - dt.timedelta(hours=24), 600)
    assert all(t.cpu_percent == pytest.approx(4.5) for t in tens)  # the mean of 0..9
    async with db.transaction() as session:
        total = (await session.execute(select(func.count()).select_from(StatsSample))).scalar()
    assert total == len(minutes) + len(tens)


async def test_history_picks_a_resolution_that_fits() -> None:
    day = dt.timedelta(days=1)
    assert stats.choose_resolution(NOW - dt.timedelta(minutes=30), NOW, None) == 0
    assert stats.choose_resolution(NOW - day, NOW, None) == 60
    assert stats.choose_resolution(NOW - 7 * day, NOW, None) == 600
    with pytest.raises(Exception, match="more than"):
        stats.choose_resolution(NOW - 7 * day, NOW, 1)
    assert stats.parse_since("-600", NOW) == NOW - dt.timedelta(minutes=10)
    assert stats.parse_since("2026-05-04T11:00:00Z", NOW) == NOW.replace(minute=0, second=0) \
        - dt.timedelta(hours=1)
