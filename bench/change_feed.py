"""The portal's change feed at scale: what one poll costs with COUNT hosts and COUNT VMs.

Fills a database (SQLite, or PostgreSQL with --pg: a scratch database of its own) with
hosts and VMs written straight into it, then, round after round, changes the status of
`--changes` VMs (a bulk statement, as the monitor writes) and times one poll of the feed
both ways: reading VMs, hosts and recent jobs whole (what every poll did before the change
log, and what the feed's first poll still does) and reading the change log since the last
poll. Prints p50/p95 of wall and CPU time per poll and checks both saw every change.
Usage:
    .venv/bin/python -m bench.change_feed [--count 20000] [--changes 50] [--rounds 20] [--pg]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select, update
from tests.support.listing_rows import fill
from tests.support.postgres import scratch_database

from bench.api_list import percentile
from overt.engine.db import migrate
from overt.engine.db.database import Database
from overt.engine.db.seed import seed
from overt.engine.db.tables import Vm
from overt.engine.model.status import VmStatus
from overt.engine.web.live import poll, take_snapshot


@contextlib.contextmanager
def database(pg: bool) -> Iterator[str]:
    if pg:
        with scratch_database("overt_bench") as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="overt-bench-") as directory:
        yield f"sqlite:///{Path(directory) / 'engine.db'}"


async def measure(url: str, count: int, changes: int, rounds: int) -> None:
    migrate.upgrade(url)
    db, writer = Database(url), Database(url)
    await seed(db)
    await fill(url, count)
    async with db.transaction() as session:
        vm_ids = list((await session.execute(select(Vm.id).order_by(Vm.name))).scalars())
        snap = await take_snapshot(session)
    times: dict[str, list[tuple[float, float]]] = {"whole tables": [], "change log": []}
    try:
        for round_ in range(rounds):
            chosen = vm_ids[round_ * changes % len(vm_ids):][:changes]
            # A status no VM had before it was chosen (a second pass over the VMs: another).
            status = (VmStatus.PAUSED if round_ * changes // len(vm_ids) % 2 == 0
                      else VmStatus.SUSPENDED)
            async with writer.transaction() as session:
                await session.execute(update(Vm).where(Vm.id.in_(chosen)).values(status=status))
            wall, cpu = time.perf_counter(), time.process_time()
            async with db.transaction() as session:
                whole = await take_snapshot(session)
            times["whole tables"].append((time.perf_counter() - wall, time.process_time() - cpu))
            wall, cpu = time.perf_counter(), time.process_time()
            async with db.transaction() as session:
                found = await poll(session, snap, with_stats=False)
            times["change log"].append((time.perf_counter() - wall, time.process_time() - cpu))
            told = {change.data["id"] for change in found if change.kind == "vm"}
            assert told == {str(vm_id) for vm_id in chosen}, "the feed missed a change"
            assert whole.vms == snap.vms, "the feed's VMs differ from the tables"
    finally:
        await db.dispose()
        await writer.dispose()
    print(f"{count} hosts, {count} VMs, {changes} VMs changed a poll, {rounds} polls")
    print("| poll | wall p50 | wall p95 | CPU p50 | CPU p95 |")
    print("|---|---|---|---|---|")
    for name, pairs in times.items():
        walls = sorted(w * 1000 for w, _ in pairs)
        cpus = sorted(c * 1000 for _, c in pairs)
        print(f"| {name} | {percentile(walls, 50):.1f} ms | {percentile(walls, 95):.1f} ms "
              f"| {percentile(cpus, 50):.1f} ms | {percentile(cpus, 95):.1f} ms |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--pg", action="store_true")
    args = parser.parse_args()
    with database(args.pg) as url:
        asyncio.run(measure(url, args.count, args.changes, args.rounds))


if __name__ == "__main__":
    main()
