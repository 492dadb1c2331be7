"""Scrape time of the engine's /metrics with a large fleet in its database.

Runs a real engine (SQLite, or PostgreSQL with --pg: a scratch database of its own)
in this process, writes 1,000 hosts and 20,000 VMs (most running, with CPU and memory
figures) and an hour of raw stats samples per host straight into its tables, then
times GET /metrics over HTTPS, as Prometheus sends it (bearer token), from a client
thread. Prints p50/p99 of the whole scrape, of its database part, and the size.
Usage:
    .venv/bin/python -m bench.metrics_scrape [--hosts 1000] [--vms 20000] [--scrapes 30] [--pg]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import random
import ssl
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert, select
from tests.support.engine import RunningEngine, start_engine
from tests.support.no_nodes import NoNodes
from tests.support.postgres import scratch_database

from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import Cluster, Host, StatsSample, Vm, utcnow

TOKEN = "bench-" + "0123456789abcdef" * 3
CHUNK = 5000
RNG = random.Random(17)  # noqa: S311 - figures, not secrets


async def fill(url: str, hosts: int, vms: int, samples_per_host: int) -> None:
    """Hosts (95% up), VMs spread over them (80% running), samples every 15 s per host."""
    db = Database(url)
    now = utcnow()
    async with db.transaction() as session:
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert cluster is not None
        host_ids = [uuid.uuid4() for _ in range(hosts)]
        await session.execute(insert(Host), [{
            "id": host_id, "name": f"host-{n:04d}", "address": f"10.0.{n // 250}.{n % 250 + 1}",
            "cluster_id": cluster.id, "status": "up" if n % 20 else "maintenance",
            "memory_mib": 262144, "free_memory_mib": RNG.randrange(1024, 200000),
            "cpu_percent": RNG.uniform(0, 100),
            "last_heartbeat_at": now - dt.timedelta(seconds=RNG.uniform(0, 5))}
            for n, host_id in enumerate(host_ids)])
        rows: list[dict[str, Any]] = []
        for n in range(vms):
            running = n % 5 != 0
            rows.append({"name": f"vm-{n:05d}", "cluster_id": cluster.id,
                         "template_id": BLANK_TEMPLATE_ID, "memory_mib": 2048,
                         "status": "up" if running else "down",
                         "host_id": host_ids[n % hosts] if running else None,
                         "cpu_percent": RNG.uniform(0, 100) if running else 0.0,
                         "memory_used_mib": RNG.randrange(256, 2048) if running else 0})
        for chunk in range(0, len(rows), CHUNK):
            await session.execute(insert(Vm), rows[chunk:chunk + CHUNK])
    samples = [{"subject_type": "host", "subject_id": host_id,
                "time": now - dt.timedelta(seconds=15 * i), "cpu_percent": 50.0,
                "memory_used_mib": 100000 + i, "memory_total_mib": 262144}
               for host_id in host_ids for i in range(samples_per_host)]
    for chunk in range(0, len(samples), CHUNK * 4):
        async with db.transaction() as session:
            await session.execute(insert(StatsSample), samples[chunk:chunk + CHUNK * 4])
    await db.dispose()


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def scrape(engine: RunningEngine, count: int) -> tuple[list[float], list[float], str]:
    """Times of whole scrapes and of their database part (the engine's own gauge)."""
    tls = ssl.create_default_context(cafile=str(engine.ca_file))
    base = engine.url.removesuffix("/ovirt-engine/api")
    totals, reads, text = [], [], ""
    with httpx.Client(base_url=base, verify=tls, timeout=120,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        client.get("/metrics")  # warm up
        for _ in range(count):
            start = time.perf_counter()
            reply = client.get("/metrics")
            totals.append(time.perf_counter() - start)
            assert reply.status_code == 200, reply.text
            text = reply.text
            for family in text_string_to_metric_families(text):
                if family.name == "overt_metrics_fleet_read_seconds":
                    reads.append(family.samples[0].value)
    return totals, reads, text


def run(data: Path, db: str | None, args: argparse.Namespace) -> None:
    token_file = data / "metrics-token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    # Hosts are never heard from: a long heartbeat timeout keeps them up during the run.
    engine = start_engine(data, db=db, transport=NoNodes(), metrics_token_file=token_file,
                          heartbeat_timeout_s=86400.0)
    try:
        started = time.perf_counter()
        asyncio.run(fill(engine.runtime.settings.database_url(), args.hosts, args.vms,
                         args.samples_per_host))
        filled = time.perf_counter() - started
        totals, reads, text = scrape(engine, args.scrapes)
        families = list(text_string_to_metric_families(text))
        series = sum(len(f.samples) for f in families)
        backend = "PostgreSQL" if db else "SQLite"
        print(f"{args.hosts} hosts, {args.vms} VMs, {args.hosts * args.samples_per_host} host "
              f"samples on {backend} (filled in {filled:.0f} s); {args.scrapes} scrapes")
        print(f"response: {len(text.encode()) / 1e6:.1f} MB, {len(families)} families, "
              f"{series} samples")
        for label, values in (("GET /metrics", totals), ("  of which the database", reads)):
            print(f"{label:<26} p50 {percentile(values, 50) * 1000:7.1f} ms   "
                  f"p99 {percentile(values, 99) * 1000:7.1f} ms   "
                  f"mean {statistics.mean(values) * 1000:7.1f} ms")
    finally:
        engine.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--vms", type=int, default=20000)
    parser.add_argument("--samples-per-host", type=int, default=240)  # an hour, every 15 s
    parser.add_argument("--scrapes", type=int, default=30)
    parser.add_argument("--pg", action="store_true", help="PostgreSQL (a scratch database)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        db = stack.enter_context(scratch_database("overt_bench")) if args.pg else None
        run(Path(tempfile.mkdtemp()), db, args)


if __name__ == "__main__":
    main()
