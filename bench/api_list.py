"""API listing at scale: `GET /vms` and `GET /hosts` of 1,000 each, as the oVirt SDK asks.

Runs a real engine (SQLite, or PostgreSQL with --pg: a scratch database of its own)
in this process, fills it with hosts and VMs (half of them running, each with a NIC
and a disk), and times requests from this thread, one at a time, over HTTPS with XML.
The request kinds are interleaved round by round so a busy machine weighs on each alike.
Prints p50/p99 of the wall time per request and the engine thread's CPU time (p50).
Usage:
    .venv/bin/python -m bench.api_list [--count 1000] [--rounds 30] [--pg] [--profile]
                                       [--keep-heap]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import ssl
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from tests.support.engine import RunningEngine, start_engine
from tests.support.listing_rows import fill
from tests.support.no_nodes import NoNodes
from tests.support.postgres import scratch_database

from overt.engine.composition import Parts


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def requests_of(count: int) -> list[tuple[str, str]]:
    half = f"vm-{count // 2:05d}"
    return [
        (f"GET /vms ({count})", "/vms"),
        (f"GET /hosts ({count})", "/hosts"),
        ("GET /vms?max=100", "/vms?max=100"),
        ("GET /hosts?max=100", "/hosts?max=100"),
        ("GET /vms?search=status=up", "/vms?search=status%3Dup"),
        (f"GET /vms?search=name={half}", f"/vms?search=name%3D{half}"),
        ("GET /vms?follow=nics,disk_attachments", "/vms?follow=nics,disk_attachments"),
        ("GET /vms?all_content=true", "/vms?all_content=true"),
    ]


@contextlib.contextmanager
def database(pg: bool) -> Iterator[str | None]:
    if not pg:
        yield None
        return
    with scratch_database("bench_list") as url:
        yield url


def settle() -> None:
    """What `overt engine` does once it serves (`composition.settle_heap`), if the engine's
    source has it (a previous engine's, measured for comparison, may not)."""
    try:
        from overt.engine.composition import settle_heap
    except ImportError:
        print("(this engine does not settle its heap)")
        return
    settle_heap()


def profiled(engine: RunningEngine) -> cProfile.Profile:
    """A profiler enabled in the engine's own thread (where requests are served)."""
    profile = cProfile.Profile()

    async def enable() -> None:
        profile.enable()

    asyncio.run_coroutine_threadsafe(enable(), engine.loop).result()
    return profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--pg", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--profile", action="store_true",
                        help="print the engine's top functions (cProfile, skews the times)")
    parser.add_argument("--only", default="", help="only requests whose label contains this")
    parser.add_argument("--keep-heap", action="store_true",
                        help="leave the startup heap to the garbage collector, as the engines "
                        "tests start do (`overt engine` hides it: composition.settle_heap)")
    parser.add_argument("--sort", default="cumulative",
                        help="the order of the profile's functions: cumulative or tottime")
    args = parser.parse_args()
    with database(args.pg) as url:
        # The API alone: no monitor marks the idle fleet non responsive meanwhile.
        engine = start_engine(Path(tempfile.mkdtemp()), db=url, transport=NoNodes(),
                              parts=Parts.only("api"))
        try:
            asyncio.run(fill(engine.runtime.settings.database_url(), args.count))
            if not args.keep_heap:
                settle()
            run(engine, args)
        finally:
            engine.stop()


def run(engine: RunningEngine, args: argparse.Namespace) -> None:
    tls = ssl.create_default_context(cafile=str(engine.ca_file))
    base = engine.url.removesuffix("/ovirt-engine/api")
    token = httpx.post(f"{base}/ovirt-engine/sso/oauth/token", verify=tls, data={
        "grant_type": "password", "scope": "ovirt-app-api", "username": "admin@internal",
        "password": engine.password}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/xml", "Version": "4"}
    kinds = [r for r in requests_of(args.count) if args.only in r[0]]
    times: dict[str, list[float]] = {label: [] for label, _ in kinds}
    # The engine thread's CPU time per request: steadier than wall time on a busy machine
    # (it leaves out the database's own thread under SQLite, and PostgreSQL's processes).
    assert engine.thread.ident is not None
    engine_clock = time.pthread_getcpuclockid(engine.thread.ident)
    cpu: dict[str, list[float]] = {label: [] for label, _ in kinds}
    sizes: dict[str, int] = {}
    with httpx.Client(base_url=engine.url, verify=tls, timeout=120, headers=headers) as client:
        for _, path in kinds:  # warm up
            client.get(path).raise_for_status()
        profile = profiled(engine) if args.profile else None
        for _ in range(args.rounds):
            for label, path in kinds:
                start, start_cpu = time.perf_counter(), time.clock_gettime(engine_clock)
                reply = client.get(path)
                times[label].append(time.perf_counter() - start)
                cpu[label].append(time.clock_gettime(engine_clock) - start_cpu)
                reply.raise_for_status()
                sizes[label] = len(reply.content)
        if profile is not None:
            profile.disable()
            pstats.Stats(profile).sort_stats(args.sort).print_stats(45)
    backend = "PostgreSQL" if args.pg else "SQLite"
    print(f"engine with {args.count} hosts and {args.count} VMs on {backend}; "
          f"{args.rounds} rounds, interleaved")
    for label, _ in kinds:
        samples = times[label]
        print(f"{label:<42} p50 {percentile(samples, 50) * 1000:7.1f} ms   "
              f"p99 {percentile(samples, 99) * 1000:7.1f} ms   "
              f"engine CPU p50 {percentile(cpu[label], 50) * 1000:6.1f} ms   "
              f"{sizes[label] / 1024:6.0f} KiB")


if __name__ == "__main__":
    main()
