"""Fully managed mode at scale: N simulated nodes with M VMs each against one engine.

One command builds everything on this machine: a PostgreSQL database and a RabbitMQ
vhost of its own, the engine as separate processes (api, workers, monitors) over the
broker, and the fleet of simulated nodes (`overt simulate nodes`, many per process,
each with its own identity and broker account, enrolled through the engine's
gateway, registry and broker administrator: announce, approve through the API).
The M VMs of every node are prepared in the database (as `bench.api_latency` does),
placed on its host when the host is approved, and reported running by their node when
it starts.

Measured, while the fleet sends heartbeats (5 s) and stats (15 s):
- engine CPU: the engine processes' CPU time over the measuring window;
- event lag: node event to database commit, from the monitors' own reports;
- API latency while loaded: GET /vms/{id} and GET /hosts (paced, one at a time);
- time to start K VMs through the API (POST .../start for each) until all are up;
- engine and monitor CPU per event (events and stats samples), refusals (early, busy),
  redeliveries (duplicates) and resyncs, from the monitors' reports;
- with --cpu-hog, all of it while another process keeps one core busy;
- during enrollment: the monitors' refusals, duplicates, resyncs and event lag, and the
  engine's transactions seen in `pg_stat_activity` (every 0.5 s): the longest one left
  "idle in transaction" (with its last statement) and the longest wait for a row lock.
Usage (root, after scripts/setup):
    .venv/bin/python -m bench.scale --nodes 1000 --vms-per-node 20
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import contextlib
import json
import os
import random
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import make_url
from tests.support.broker import Broker, close_broker, open_broker
from tests.support.managed import ManagedSite
from tests.support.postgres import scratch_database

from overt.engine.db import migrate
from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID, seed
from overt.engine.db.tables import Cluster, Host, Vm
from overt.engine.model.status import VmStatus
from overt.node.simulated.fleet import node_uuid, vm_name, vm_uuid
from overt.system.daemons import SYSTEM_RABBITMQ

SEED = "scale"
REPORT = re.compile(r"^(\S+) INFO .*monitor: in the last (\d+) s: (\d+) events applied.*"
                    r"events p50 (\d+) ms p99 (\d+) ms max (\d+) ms, stats p99 (\d+) ms")
# The same lines' other counts (resyncs: from monitors that report them).
COUNTS = re.compile(r"(\d+) duplicate, (\d+) stale, (\d+) refused as early, (\d+) as busy, "
                    r"(\d+) stats samples written.*?(?:; (\d+) resyncs)?$")

OUTCOMES = re.compile(r"^(\S+) INFO .*monitor: in the last \d+ s: (\d+) events applied, "
                      r"(\d+) duplicate, \d+ stale, (\d+) refused as early, (\d+) as busy")


@dataclass
class Options:
    nodes: int
    vms_per_node: int
    start_vms: int
    fleet_processes: int
    workers: int
    monitors: int
    measure_s: float
    stats_interval: float
    heartbeat_interval: float
    keep: bool
    cpu_hog: bool = False


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# -- set-up -------------------------------------------------------------------------------

@contextmanager
def broker() -> Iterator[Broker]:
    opened = open_broker(SYSTEM_RABBITMQ)
    try:
        yield opened
    finally:
        close_broker(opened)


async def prepare_vms(db_url: str, options: Options) -> list[uuid.UUID]:
    """The VMs each node runs (ids the fleet derives too), and VMs to start later."""
    migrate.upgrade(db_url)
    db = Database(db_url)
    await seed(db)
    async with db.transaction() as session:
        cluster = (await session.execute(select(Cluster).where(Cluster.name == "Default"))
                   ).scalar_one()
        rows = [{"id": vm_uuid(SEED, node, n), "name": vm_name(SEED, node, n),
                 "cluster_id": cluster.id, "template_id": BLANK_TEMPLATE_ID, "memory_mib": 64,
                 "status": "down"}
                for node in range(options.nodes) for n in range(options.vms_per_node)]
        to_start = [uuid.uuid4() for _ in range(options.start_vms)]
        rows += [{"id": vm_id, "name": f"start-{n:05d}", "cluster_id": cluster.id,
                  "template_id": BLANK_TEMPLATE_ID, "memory_mib": 64, "status": "down"}
                 for n, vm_id in enumerate(to_start)]
        for chunk in range(0, len(rows), 5000):
            await session.execute(insert(Vm), rows[chunk:chunk + 5000])
    await db.dispose()
    return to_start


async def place_vms_of(db_url: str, options: Options, host_ids: list[str]) -> None:
    """The prepared VMs of these hosts' nodes placed on them, as the engine does when it
    launches them, before their hosts are approved: the monitor accepts a node's report of
    a VM placed on that node only (a node cannot claim a VM the engine put nowhere), and a
    real fleet's nodes run no VM the engine never placed. Placed before the node's first
    full report, which comes once it is enrolled, they come `up` with it."""
    nodes = {node_uuid(SEED, node): node for node in range(options.nodes)}
    db = Database(db_url)
    try:
        async with db.transaction() as session:
            hosts = [(row.id, nodes[row.host_uuid]) for row in await session.execute(
                select(Host.id, Host.host_uuid).where(
                    Host.id.in_([uuid.UUID(h) for h in host_ids])))
                     if row.host_uuid in nodes]
            for host_id, node in hosts:
                await session.execute(update(Vm).where(Vm.id.in_(
                    [vm_uuid(SEED, node, n) for n in range(options.vms_per_node)])).values(
                    host_id=host_id, status=VmStatus.WAIT_FOR_LAUNCH, desired_status="up"))
    finally:
        await db.dispose()


async def count(db_url: str, *, hosts_up: bool = False, vms: list[uuid.UUID] | None = None,
                vm_status: str = "up") -> int:
    db = Database(db_url)
    try:
        async with db.transaction() as session:
            if hosts_up:
                stmt = select(func.count()).select_from(Host).where(Host.status == "up")
            else:
                stmt = select(func.count()).select_from(Vm).where(Vm.status == vm_status)
                if vms is not None:
                    stmt = stmt.where(Vm.id.in_(vms))
            return int((await session.execute(stmt)).scalar_one())
    finally:
        await db.dispose()


# -- the API -------------------------------------------------------------------------------

class Api:
    """The REST API with a bearer token, from several threads."""

    def __init__(self, site: ManagedSite) -> None:
        self.base = f"https://127.0.0.1:{site.api_port}"
        self.tls = ssl.create_default_context(cafile=str(site.ca_file))
        token = httpx.post(f"{self.base}/ovirt-engine/sso/oauth/token", verify=self.tls, data={
            "grant_type": "password", "scope": "ovirt-app-api", "username": "admin@internal",
            "password": "managed-Password-1"}, timeout=60).json()["access_token"]
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json",
                        "Version": "4"}
        self._local = threading.local()
        self.reconnects = 0  # requests sent again on a new connection (see _send)

    def client(self) -> httpx.Client:
        if not hasattr(self._local, "client"):
            self._local.client = httpx.Client(base_url=self.base, verify=self.tls, timeout=120,
                                              headers=self.headers)
        return self._local.client  # type: ignore[no-any-return]

    def get(self, path: str) -> tuple[float, httpx.Response]:
        return self._send("GET", path)

    def post(self, path: str, xml: str = "<action/>") -> tuple[float, httpx.Response]:
        return self._send("POST", path, xml)

    def _send(self, method: str, path: str, xml: str | None = None
              ) -> tuple[float, httpx.Response]:
        """One request, timed. A kept-alive connection the server closed meanwhile (its
        idle timeout), or a connection closed before its TLS handshake ended, is opened
        again and the request sent again (counted in `reconnects`; the time is the last
        attempt's)."""
        for attempt in range(3):
            start = time.perf_counter()
            try:
                reply = self.client().request(
                    method, f"/ovirt-engine/api{path}", content=xml,
                    headers={"Content-Type": "application/xml"} if xml else None)
            except (httpx.RemoteProtocolError, httpx.ConnectError):
                if attempt == 2:
                    raise
                self.reconnects += 1
                continue
            return time.perf_counter() - start, reply
        raise AssertionError("unreachable")


def approve_until_up(api: Api, site: ManagedSite, options: Options,
                     approvals: list[float]) -> float:
    """Approve the nodes that announced themselves, a look every 3 s, each node's VMs
    placed on its host first; until every host is up. The registry keeps at most 100
    hosts waiting and turns the others away until their next announce: that paces the
    fleet's arrival (looking every second instead brought more hosts up at once and the
    enrollment took longer, docs/benchmarks.md)."""
    started = time.monotonic()
    approved: set[str] = set()
    last = -1
    with ThreadPoolExecutor(8) as pool:
        while True:
            _t, reply = api.get("/hosts?search=status%3Dpending_approval&max=200")
            pending = [h["id"] for h in reply.json().get("host", []) if h["id"] not in approved]
            if pending:
                asyncio.run(place_vms_of(site.db, options, pending))
                answers = list(pool.map(lambda host_id: api.post(f"/hosts/{host_id}/approve"),
                                        pending))
                approvals.extend(elapsed for elapsed, _reply in answers)
                approved.update(pending)
            up = asyncio.run(count(site.db, hosts_up=True))
            if up != last or pending:
                say(f"{len(approved)} node(s) approved, {up} up")
                last = up
            if up >= options.nodes:
                return time.monotonic() - started
            time.sleep(3)


# -- measuring -----------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] if ordered \
        else 0.0


# What a client of a loaded engine does, in turn: look VMs up, page through hosts (as the
# web UIs do, 100 a page) and now and then list every host.
API_CYCLE = ("GET /vms/{id}", "GET /hosts?max=100", "GET /vms/{id}", "GET /vms/{id}",
             "GET /hosts?max=100", "GET /vms/{id}", "GET /vms/{id}", "GET /hosts (all)")


def api_load(api: Api, vm_ids: list[uuid.UUID], until: float, every_s: float = 0.2
             ) -> dict[str, list[float]]:
    """The requests of API_CYCLE, paced, one at a time; their latencies."""
    times: dict[str, list[float]] = {label: [] for label in API_CYCLE}
    turn = 0
    while time.monotonic() < until:
        tick = time.monotonic()
        label = API_CYCLE[turn % len(API_CYCLE)]
        path = {"GET /vms/{id}": f"/vms/{random.choice(vm_ids)}",  # noqa: S311
                "GET /hosts?max=100": "/hosts?max=100", "GET /hosts (all)": "/hosts"}[label]
        elapsed, reply = api.get(path)
        reply.raise_for_status()
        times[label].append(elapsed)
        turn += 1
        time.sleep(max(0.0, every_s - (time.monotonic() - tick)))
    return times


def service_pids() -> dict[str, list[int]]:
    """This machine's PostgreSQL and RabbitMQ processes (shared with whoever else uses them)."""
    found: dict[str, list[int]] = {"postgresql": [], "rabbitmq": []}
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            comm = stat.read_text().strip()
        except OSError:
            continue
        if comm == "postgres":
            found["postgresql"].append(int(stat.parent.name))
        elif comm.startswith("beam"):
            found["rabbitmq"].append(int(stat.parent.name))
    return found


def total_cpu(pids: list[int]) -> float:
    seconds = 0.0
    for pid in pids:
        try:
            seconds += cpu_seconds(pid)
        except OSError:
            continue  # a connection's backend that went away
    return seconds


def machine_busy() -> tuple[float, float]:
    """(busy, all) jiffies of this machine since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


class CpuMeter:
    """The CPU spent from its making on by each engine process, the fleet, PostgreSQL and
    RabbitMQ (the processes there were then), and how busy the whole machine was."""

    def __init__(self, site: ManagedSite) -> None:
        self.engine = {name: p.pid for name, p in site.processes.items()
                       if not name.startswith("fleet")}
        self.fleet = [p.pid for name, p in site.processes.items() if name.startswith("fleet")]
        self.services = service_pids()
        self._before, self._machine_before = self._read(), machine_busy()
        self.started = time.monotonic()

    def _read(self) -> dict[str, float]:
        return {**{name: cpu_seconds(pid) for name, pid in self.engine.items()},
                "fleet": total_cpu(self.fleet),
                **{name: total_cpu(pids) for name, pids in self.services.items()}}

    def shares(self) -> tuple[float, dict[str, float], float]:
        """(seconds since, cores each used on average, share of the machine's cores busy)."""
        elapsed = time.monotonic() - self.started
        now, (busy, total) = self._read(), machine_busy()
        used = {name: (now[name] - self._before[name]) / elapsed for name in now}
        busy_before, total_before = self._machine_before
        return elapsed, used, (busy - busy_before) / max(1, total - total_before)


def logged_at(stamp: str) -> float:
    """The time of a log line of Overt's (UTC, `2026-12-02T02:03:19Z`)."""
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


def monitor_reports(site: ManagedSite, options: Options, since: float,
                    until: float = float("inf")) -> list[tuple[int, ...]]:
    """(events, p50, p99, max, stats p99, duplicates, stale, refused as early, refused as
    busy, stats samples, resyncs) of each monitor report written between `since` and
    `until`."""
    found = []
    for n in range(1, options.monitors + 1):
        for line in site.text(f"monitor{n}").splitlines():
            match = REPORT.match(line)
            if match and since <= logged_at(match[1]) < until:
                counts = COUNTS.search(line)
                more = tuple(int(g or 0) for g in counts.groups()) if counts else (0,) * 6
                found.append(tuple(int(g) for g in match.groups()[2:]) + more)
    return found


class TransactionWatch:
    """Reads `pg_stat_activity` of the site's database every `every_s` in a thread: how
    long the engine's transactions stay open with nothing running ("idle in transaction":
    their process is busy with other work) and how long statements wait for row locks.
    A transaction is known by its backend and start; its longest sighting counts."""

    def __init__(self, db_url: str, every_s: float = 0.5) -> None:
        self.conninfo = make_url(db_url).set(drivername="postgresql").render_as_string(
            hide_password=False)
        self.every_s = every_s
        self.idle: dict[tuple[int, object], tuple[float, str]] = {}
        self.lock_waits: dict[tuple[int, object], tuple[float, str]] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TransactionWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            while not self._stop.wait(self.every_s):
                rows = conn.execute(
                    "SELECT pid, xact_start, state, wait_event_type, "
                    "extract(epoch FROM now() - state_change), "
                    "extract(epoch FROM now() - query_start), "
                    "left(query, 60) || ' ... ' || right(query, 60) "
                    "FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL").fetchall()
                self.samples += 1
                for pid, began, state, waits, idle_s, running_s, query in rows:
                    key = (pid, began)
                    if state == "idle in transaction":
                        if idle_s > self.idle.get(key, (0.0, ""))[0]:
                            self.idle[key] = (float(idle_s), query)
                    elif waits == "Lock" and running_s > self.lock_waits.get(key, (0.0, ""))[0]:
                        self.lock_waits[key] = (float(running_s), query)

    def summary(self) -> dict[str, object]:
        idle = sorted(self.idle.values(), reverse=True)
        waits = sorted(self.lock_waits.values(), reverse=True)
        return {
            "samples": self.samples,
            "idle_in_transaction_max_s": round(idle[0][0], 2) if idle else 0.0,
            "idle_in_transaction_over_200ms": sum(1 for s, _q in idle if s >= 0.2),
            "idle_in_transaction_longest": [f"{s:.2f} s after: {q}" for s, q in idle[:5]],
            "lock_wait_max_s": round(waits[0][0], 2) if waits else 0.0,
            "lock_waits_seen": len(waits),
            "lock_waits_longest": [f"{s:.2f} s: {q}" for s, q in waits[:3]],
        }


def enrollment_summary(site: ManagedSite, options: Options, since: float, until: float
                       ) -> dict[str, object]:
    """What the monitors' reports said while the fleet enrolled."""
    reports = monitor_reports(site, options, since, until)
    return {
        "events_applied": sum(r[0] for r in reports),
        "event_lag_p99_ms_worst_report": max((r[2] for r in reports), default=0),
        "event_lag_max_ms": max((r[3] for r in reports), default=0),
        "refused_busy": sum(r[8] for r in reports), "refused_early": sum(r[7] for r in reports),
        "duplicates": sum(r[5] for r in reports), "resyncs": sum(r[10] for r in reports),
        "busy_refusals_worst_report": max((r[8] for r in reports), default=0),
        "connecting_warnings": sum(
            site.text(f"monitor{n}").count("sent no heartbeat for")
            for n in range(1, options.monitors + 1)),
        # A node's report of a VM the engine did not place on it, refused VM by VM.
        "vm_reports_refused": sum(
            site.text(f"monitor{n}").count(": report refused")
            for n in range(1, options.monitors + 1)),
    }


@contextmanager
def cpu_hog(enabled: bool) -> Iterator[None]:
    """A process that keeps one core busy meanwhile (a busy machine), when `enabled`."""
    if not enabled:
        yield
        return
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        hog.kill()
        hog.wait()


def monitor_shares(site: ManagedSite, options: Options, since: float) -> dict[str, list[int]]:
    """Each monitor's [applied, duplicate, refused as early, refused as busy] after `since`:
    how the monitors split the fleet, and what they cost each other."""
    shares = {}
    for n in range(1, options.monitors + 1):
        totals = [0, 0, 0, 0]
        for line in site.text(f"monitor{n}").splitlines():
            match = OUTCOMES.match(line)
            if match and logged_at(match[1]) >= since:
                totals = [t + int(g) for t, g in zip(totals, match.groups()[1:], strict=True)]
        shares[f"monitor{n}"] = totals
    return shares


def measure(site: ManagedSite, api: Api, options: Options, vm_ids: list[uuid.UUID]
            ) -> dict[str, object]:
    meter, wall = CpuMeter(site), time.time()
    times = api_load(api, vm_ids, meter.started + options.measure_s)
    elapsed, used, machine = meter.shares()
    cpu = {name: used[name] for name in meter.engine}
    service_cpu = {name: round(100 * used[name]) for name in meter.services}
    time.sleep(11)  # the monitors' last report of the window
    reports = monitor_reports(site, options, wall + 10)
    events = sum(r[0] for r in reports)
    handled = events + sum(r[5] + r[6] + r[7] + r[8] for r in reports)  # taken from the queue
    samples = sum(r[9] for r in reports)
    monitor_cpu = sum(cpu[name] for name in cpu if name.startswith("monitor")) * elapsed
    return {
        "window_s": round(elapsed), "engine_cpu_percent": round(100 * sum(cpu.values())),
        "engine_cpu_by_process": {k: round(100 * v) for k, v in cpu.items()},
        "fleet_cpu_percent": round(100 * used["fleet"]),
        "service_cpu_percent": service_cpu,
        "machine_busy_percent_of_all_cores": round(100 * machine),
        "events_per_s": round(events / elapsed, 1),
        "event_lag_p99_ms_worst_report": max((r[2] for r in reports), default=0),
        "event_lag_p50_ms_median_report": statistics.median([r[1] for r in reports] or [0]),
        "event_lag_max_ms": max((r[3] for r in reports), default=0),
        "stats_lag_p99_ms_worst_report": max((r[4] for r in reports), default=0),
        # CPU per event and per stats sample together (a sample carries a host's VMs).
        "engine_cpu_ms_per_event": round(1000 * sum(cpu.values()) * elapsed
                                         / max(1, handled + samples), 2),
        "monitor_cpu_ms_per_event": round(1000 * monitor_cpu / max(1, handled + samples), 2),
        "stats_samples_per_s": round(samples / elapsed, 1),
        "refused_early": sum(r[7] for r in reports), "refused_busy": sum(r[8] for r in reports),
        "redeliveries_duplicate": sum(r[5] for r in reports),
        "stale": sum(r[6] for r in reports), "resyncs": sum(r[10] for r in reports),
        **{f"{label} p99 ms": round(1000 * percentile(t, 0.99)) for label, t in times.items()},
        **{f"{label} p50 ms": round(1000 * percentile(t, 0.50)) for label, t in times.items()},
        "api_requests": sum(len(t) for t in times.values()),
        "applied_duplicate_early_busy_by_monitor": monitor_shares(site, options, wall + 10),
    }


def start_vms(site: ManagedSite, api: Api, vm_ids: list[uuid.UUID]) -> dict[str, object]:
    """POST start for each VM from 8 threads, then wait until all are up; with the CPU
    (% of one core) each engine process, PostgreSQL, RabbitMQ and this client spent while
    the starts were submitted."""
    meter, client_before = CpuMeter(site), time.process_time()
    with ThreadPoolExecutor(8) as pool:
        posts = list(pool.map(lambda vm_id: api.post(f"/vms/{vm_id}/start"), vm_ids))
    submitted, used, machine = meter.shares()
    cpu_while_submitted = {
        **{name: round(100 * used[name]) for name in [*meter.engine, *meter.services]},
        "client": round(100 * (time.process_time() - client_before) / submitted),
        "machine_busy_percent_of_all_cores": round(100 * machine),
    }
    refused = [r.text[:200] for _t, r in posts if r.status_code >= 400]
    while asyncio.run(count(site.db, vms=vm_ids)) < len(vm_ids) - len(refused):
        if time.monotonic() - meter.started > 1800:
            break
        time.sleep(0.5)
    return {"vms": len(vm_ids), "all_up_s": round(time.monotonic() - meter.started, 1),
            "submitted_s": round(submitted, 1), "refused": len(refused),
            "cpu_percent_while_submitted": cpu_while_submitted,
            "POST start p99 ms": round(1000 * percentile([t for t, _r in posts], 0.99)),
            "up": asyncio.run(count(site.db, vms=vm_ids)), "first_refusals": refused[:3]}


# -- the run -------------------------------------------------------------------------------

def run(options: Options) -> dict[str, object]:
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-scale-"))
    try:
        return _run(options, base)
    finally:
        if not options.keep:  # also when stopped before the site was made
            shutil.rmtree(base, ignore_errors=True)


def _run(options: Options, base: Path) -> dict[str, object]:
    results: dict[str, object] = {"options": options.__dict__}
    with cpu_hog(options.cpu_hog), scratch_database("overt_scale") as db_url, \
            broker() as opened:
        site = ManagedSite(base, db_url, opened.engine_url_now(), opened.admin_url)
        try:
            say(f"preparing {options.nodes * options.vms_per_node} VMs in PostgreSQL")
            to_start = asyncio.run(prepare_vms(db_url, options))
            engine_env = {"OVERT_MONITOR_REPORT_INTERVAL_S": "10",
                          "OVERT_HEARTBEAT_TIMEOUT_S": "30"}
            site.engine("api", "api", **engine_env)
            site.wait_for_api(120)
            for n in range(1, options.workers + 1):
                site.engine(f"worker{n}", "worker", **engine_env)
            for n in range(1, options.monitors + 1):
                site.engine(f"monitor{n}", "monitor", **engine_env)
            share = -(-options.nodes // options.fleet_processes)
            for n, first in enumerate(range(0, options.nodes, share), start=1):
                site.fleet(f"fleet{n}", min(share, options.nodes - first), first=first,
                           seed=SEED, vms_per_node=options.vms_per_node,
                           stats_interval=options.stats_interval,
                           heartbeat_interval=options.heartbeat_interval,
                           announce_interval=20, log_level="WARNING")
            api = Api(site)
            say(f"enrolling {options.nodes} simulated nodes (announce, approve)")
            enrolling = time.time()
            approvals: list[float] = []
            with TransactionWatch(db_url) as watch:
                results["enrollment_s"] = round(
                    approve_until_up(api, site, options, approvals), 1)
                wanted = options.nodes * options.vms_per_node
                while asyncio.run(count(site.db)) < wanted:
                    time.sleep(2)
                results["vms_up_s"] = round(time.time() - enrolling, 1)
                time.sleep(11)  # the monitors' last report of the enrollment
            results["enrollment"] = {
                **enrollment_summary(site, options, enrolling, time.time()),
                "transactions": watch.summary(),
                "POST approve p50 / p99 ms": [round(1000 * percentile(approvals, q))
                                              for q in (0.5, 0.99)]}
            say(json.dumps(results["enrollment"]))
            say(f"{options.nodes} nodes up with {wanted} VMs; settling for 30 s")
            time.sleep(30)
            running = [vm_uuid(SEED, random.randrange(options.nodes),  # noqa: S311
                               random.randrange(options.vms_per_node))  # noqa: S311
                       for _ in range(200)] if options.vms_per_node else to_start[:1]
            say(f"measuring for {options.measure_s:.0f} s")
            results["steady"] = measure(site, api, options, running)
            say(json.dumps(results["steady"]))
            say(f"starting {len(to_start)} VMs through the API")
            results["start"] = start_vms(site, api, to_start)
            say(json.dumps(results["start"]))
            results["hosts_up_at_end"] = asyncio.run(count(site.db, hosts_up=True))
            results["api_reconnects"] = api.reconnects
        finally:
            site.stop_all()
            leftovers = stray_processes(base)
            if leftovers:
                say(f"killed {len(leftovers)} leftover process(es) of the run: {leftovers}")
            if options.keep:
                say(f"logs kept in {base}")
    return results


def stray_processes(base: Path) -> list[int]:
    """Processes still running from this run's directory (children the engine or the
    fleet started and left): killed, by their ids. Returns those ids."""
    mine = str(base)
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if mine in cmdline.read_bytes().decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return found


def _stop_on_signal(signum: int, _frame: object) -> None:
    """SIGTERM or SIGHUP (a closed terminal) end the run as Ctrl-C does: through the
    clean-up (engine and fleet stopped, database and vhost dropped)."""
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGHUP, _stop_on_signal)
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--vms-per-node", type=int, default=20)
    parser.add_argument("--start-vms", type=int, default=1000)
    parser.add_argument("--fleet-processes", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--monitors", type=int, default=1,
                        help="monitors split the fleet's event partitions between them")
    parser.add_argument("--measure", type=float, default=120.0, help="seconds")
    parser.add_argument("--stats-interval", type=float, default=15.0)
    parser.add_argument("--heartbeat-interval", type=float, default=5.0)
    parser.add_argument("--keep", action="store_true", help="keep the logs")
    parser.add_argument("--cpu-hog", action="store_true",
                        help="keep one core busy with another process throughout")
    args = parser.parse_args()
    options = Options(nodes=args.nodes, vms_per_node=args.vms_per_node,
                      start_vms=args.start_vms, fleet_processes=args.fleet_processes,
                      workers=args.workers, monitors=args.monitors, measure_s=args.measure,
                      stats_interval=args.stats_interval,
                      heartbeat_interval=args.heartbeat_interval, keep=args.keep,
                      cpu_hog=args.cpu_hog)
    results = run(options)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
