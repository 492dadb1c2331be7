"""The monitor's cost of applying node events, without broker, API or real nodes.

A simulated fleet's events (heartbeats, VM lifecycle events, full state reports,
stats samples) go straight into the monitor's apply path (`apply_events` in the
transactions the monitor's batches use; stats through `StatsWriter`) against a
PostgreSQL database of its own and a SQLite one. Envelopes are built before the
clock starts: what is measured is the monitor process's CPU (`time.process_time`,
so the database server's own work is not counted) per event, by kind, and the wall
time of each batch (p50/p99).

Kinds:
- heartbeat: every node's heartbeat, in order (the bulk of a quiet fleet's events);
- lifecycle: one VM per node paused, then running again (a status change each);
- lifecycle-same: a VM reported running that is already up (changes nothing);
- state: a node's full report of its VMs, all as the engine believes them;
- stats: a stats sample per node with its VMs' stats (written in bulk).

Usage (after scripts/setup; PostgreSQL as the tests use it):
    .venv/bin/python -m bench.monitor_apply --nodes 500 --rounds 4
    .venv/bin/python -m bench.monitor_apply --db sqlite --profile heartbeat
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import pstats
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import insert, select
from tests.support.postgres import scratch_database

from overt.engine.db import migrate
from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID, seed
from overt.engine.db.tables import Cluster, Host, Vm
from overt.engine.monitor.apply import Gaps, apply_events
from overt.engine.monitor.stats_writer import StatsWriter
from overt.protocol import EventEnvelope
from overt.protocol.events import Heartbeat, HostStateReport, StatsSample, VmLifecycle
from overt.protocol.host import HostState, HostStats, NicStats, VmState, VmStats, VmStatusReport

KINDS = ("heartbeat", "lifecycle", "lifecycle-same", "state", "stats")


@dataclass
class Node:
    host_id: uuid.UUID
    host_uuid: uuid.UUID
    boot_id: uuid.UUID
    vms: list[tuple[uuid.UUID, str]]
    seq: int = 0

    def envelope(self, event: object) -> EventEnvelope:
        self.seq += 1
        return EventEnvelope(host_uuid=self.host_uuid, boot_id=self.boot_id, seq=self.seq,
                             event=event)


@dataclass
class Figures:
    events: int = 0
    cpu_s: float = 0.0
    batch_wall_s: list[float] = field(default_factory=list)

    def line(self, db: str, kind: str) -> str:
        ordered = sorted(self.batch_wall_s)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * len(ordered)) - 1)] if ordered else 0
        return (f"{db:10s} {kind:15s} {self.events:7d} events  "
                f"CPU {1000 * self.cpu_s / max(self.events, 1):6.3f} ms/event  "
                f"batch wall p50 {1000 * statistics.median(ordered or [0]):7.1f} ms "
                f"p99 {1000 * p99:7.1f} ms ({len(ordered)} batches)")


async def prepare(db_url: str, nodes: int, vms_per_node: int) -> list[Node]:
    """A fleet of `nodes` hosts up, each running `vms_per_node` VMs, heard a moment ago."""
    migrate.upgrade(db_url)
    db = Database(db_url)
    await seed(db)
    fleet = [Node(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(),
                  [(uuid.uuid4(), f"bench-{n:05d}-{v:02d}") for v in range(vms_per_node)])
             for n in range(nodes)]
    now = dt.datetime.now(dt.UTC)
    async with db.transaction() as session:
        cluster_id = (await session.execute(select(Cluster.id))).scalars().first()
        await session.execute(insert(Host), [
            {"id": node.host_id, "name": f"bench-{n:05d}", "address": f"10.9.{n // 250}.{n % 250}",
             "cluster_id": cluster_id, "status": "up", "host_uuid": node.host_uuid,
             "boot_id": node.boot_id, "last_seq": 0, "last_heartbeat_at": now,
             "memory_mib": 65536, "free_memory_mib": 32768}
            for n, node in enumerate(fleet)])
        rows = [{"id": vm_id, "name": name, "cluster_id": cluster_id,
                 "template_id": BLANK_TEMPLATE_ID, "memory_mib": 64, "status": "up",
                 "host_id": node.host_id}
                for node in fleet for vm_id, name in node.vms]
        for chunk in range(0, len(rows), 5000):
            await session.execute(insert(Vm), rows[chunk:chunk + 5000])
    await db.dispose()
    return fleet


def _report(vm: tuple[uuid.UUID, str], state: VmState) -> VmStatusReport:
    return VmStatusReport(vm_id=vm[0], name=vm[1], state=state)


def events_of(kind: str, fleet: list[Node], rnd: int) -> list[EventEnvelope]:
    """One round of `kind`: an event of each node."""
    if kind == "heartbeat":
        return [node.envelope(Heartbeat(vm_count=len(node.vms), free_memory_mib=30000 + rnd,
                                        uptime_s=100.0 + rnd)) for node in fleet]
    if kind in ("lifecycle", "lifecycle-same"):
        state = VmState.PAUSED if kind == "lifecycle" and rnd % 2 == 0 else VmState.RUNNING
        return [node.envelope(VmLifecycle(vm=_report(node.vms[rnd % len(node.vms)], state)))
                for node in fleet]
    if kind == "state":
        return [node.envelope(HostStateReport(state=HostState(
            host_uuid=node.host_uuid, boot_id=node.boot_id, seq=node.seq,
            free_memory_mib=30000,
            vms=tuple(_report(vm, VmState.RUNNING) for vm in node.vms)))) for node in fleet]
    if kind == "stats":
        return [EventEnvelope(host_uuid=node.host_uuid, boot_id=node.boot_id, event=StatsSample(
            interval_s=15.0,
            host=HostStats(cpu_percent=12.5 + rnd, memory_total_mib=65536,
                           memory_used_mib=30000, memory_free_mib=35536,
                           nics=(NicStats(name="eth0", rx_bytes=10**9 * rnd, tx_bytes=10**8,
                                          rx_rate_bps=1e6, tx_rate_bps=2e5),)),
            vms=tuple(VmStats(vm_id=vm_id, name=name, cpu_percent=3.0 + rnd,
                              cpu_time_ns=10**10 * rnd, memory_mib=64,
                              net_rx_bytes=10**6 * rnd, net_tx_bytes=10**5 * rnd)
                      for vm_id, name in node.vms))) for node in fleet]
    raise ValueError(kind)


@contextmanager
def measured(figures: Figures, events: int) -> Iterator[None]:
    cpu, wall = time.process_time(), time.perf_counter()
    yield
    figures.cpu_s += time.process_time() - cpu
    figures.batch_wall_s.append(time.perf_counter() - wall)
    figures.events += events


async def apply_kind(db: Database, kind: str, envelopes: list[EventEnvelope], batch: int,
                     figures: Figures) -> None:
    if kind == "stats":
        writer = StatsWriter(db)
        for start in range(0, len(envelopes), batch):
            chunk = envelopes[start:start + batch]
            with measured(figures, len(chunk)):
                for envelope in chunk:
                    writer.add(envelope)
                await writer.flush()
        return
    for start in range(0, len(envelopes), batch):
        chunk = [(envelope, Gaps.WAIT) for envelope in envelopes[start:start + batch]]
        with measured(figures, len(chunk)):
            async with db.transaction() as session:
                results = await apply_events(session, chunk, skip_busy=True)
        if any(isinstance(result, Exception) for result in results):
            raise RuntimeError(f"{kind}: events refused: {results[:3]}")


async def run_db(label: str, db_url: str, options: argparse.Namespace) -> None:
    fleet = await prepare(db_url, options.nodes, options.vms_per_node)
    db = Database(db_url)
    figures = {kind: Figures() for kind in options.kinds}
    profiler = cProfile.Profile() if options.profile else None
    try:
        # Warm-up (statement caches, connections): a round of each kind, not counted.
        for kind in options.kinds:
            await apply_kind(db, kind, events_of(kind, fleet, 0), options.batch, Figures())
        for rnd in range(1, options.rounds + 1):
            for kind in options.kinds:  # interleaved, so a busy moment hits every kind
                envelopes = events_of(kind, fleet, rnd)
                step = apply_kind(db, kind, envelopes, options.batch, figures[kind])
                if profiler is not None and kind == options.profile:
                    profiler.enable()
                    await step
                    profiler.disable()
                else:
                    await step
    finally:
        await db.dispose()
    for kind in options.kinds:
        print(figures[kind].line(label, kind), flush=True)
    if profiler is not None:
        print(f"--- profile of {options.profile} on {label} (cumulative) ---")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(options.profile_lines)
        print(f"--- profile of {options.profile} on {label} (own time) ---")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(options.profile_lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--vms-per-node", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=4, help="events of each kind per node")
    parser.add_argument("--batch", type=int, default=200,
                        help="events per transaction (the monitor batches up to 500)")
    parser.add_argument("--db", choices=("postgresql", "sqlite", "both"), default="both")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--profile", choices=KINDS, help="cProfile this kind")
    parser.add_argument("--profile-lines", type=int, default=30)
    options = parser.parse_args()
    print(f"{options.nodes} nodes x {options.vms_per_node} VMs, {options.rounds} rounds, "
          f"batches of {options.batch}", flush=True)
    if options.db in ("postgresql", "both"):
        with scratch_database("overt_monapply") as url:
            asyncio.run(run_db("postgresql", url, options))
    if options.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="overt-monapply-",
                                         dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
            asyncio.run(run_db("sqlite", f"sqlite:///{tmp}/engine.db", options))


if __name__ == "__main__":
    main()
