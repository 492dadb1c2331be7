"""API latency: list 1,000 VMs and look one up, as the oVirt SDK does (XML over HTTPS).

Runs a real engine (SQLite by default, or --db postgresql+psycopg://...) in this
process, fills it with VMs, and times requests from a separate client thread.
Prints p50/p99 per request type. Usage:
    .venv/bin/python -m bench.api_latency [--vms 1000] [--requests 200] [--db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import select
from tests.support.engine import RunningEngine, start_engine
from tests.support.no_nodes import NoNodes

from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import Cluster, Vm


async def fill(url: str, count: int) -> list[uuid.UUID]:
    db = Database(url)
    async with db.transaction() as session:
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert cluster is not None
        ids = [uuid.uuid4() for _ in range(count)]
        session.add_all(Vm(id=vm_id, name=f"bench-{n:05d}", cluster_id=cluster.id,
                           template_id=BLANK_TEMPLATE_ID, memory_mib=512, status="down")
                        for n, vm_id in enumerate(ids))
    await db.dispose()
    return ids


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure(engine: RunningEngine, path: str, requests: int, token: str) -> list[float]:
    tls = ssl.create_default_context(cafile=str(engine.ca_file))
    base = engine.url.removesuffix("/ovirt-engine/api")
    times = []
    with httpx.Client(base_url=base, verify=tls, timeout=60) as client:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/xml",
                   "Version": "4"}
        client.get(path, headers=headers)  # warm up
        for _ in range(requests):
            start = time.perf_counter()
            reply = client.get(path, headers=headers)
            times.append(time.perf_counter() - start)
            assert reply.status_code == 200
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    engine = start_engine(Path(tempfile.mkdtemp()), db=args.db, transport=NoNodes())
    try:
        ids = asyncio.run(fill(engine.runtime.settings.database_url(), args.vms))
        tls = ssl.create_default_context(cafile=str(engine.ca_file))
        base = engine.url.removesuffix("/ovirt-engine/api")
        token = httpx.post(f"{base}/ovirt-engine/sso/oauth/token", verify=tls, data={
            "grant_type": "password", "scope": "ovirt-app-api", "username": "admin@internal",
            "password": engine.password}).json()["access_token"]
        backend = "PostgreSQL" if args.db else "SQLite"
        print(f"engine with {args.vms} VMs on {backend}; {args.requests} requests each")
        for label, path, count in (
            (f"GET /vms ({args.vms} VMs, XML)", "/ovirt-engine/api/vms", max(20, args.requests // 10)),
            ("GET /vms/{id}", f"/ovirt-engine/api/vms/{ids[len(ids) // 2]}", args.requests),
            ("GET /vms?search=name=...", "/ovirt-engine/api/vms?search=name%3Dbench-00500",
             args.requests),
        ):
            times = measure(engine, path, count, token)
            print(f"{label:<40} p50 {percentile(times, 50) * 1000:7.1f} ms   "
                  f"p99 {percentile(times, 99) * 1000:7.1f} ms   "
                  f"mean {statistics.mean(times) * 1000:7.1f} ms")
    finally:
        engine.stop()


if __name__ == "__main__":
    main()
