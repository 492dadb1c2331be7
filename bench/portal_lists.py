"""The portal's VM and host lists at scale, in headless Chromium: page loads of 20,000 VMs.

Runs a real engine (its API and worker; SQLite, or PostgreSQL with --pg: a scratch
database of its own) in this process, fills it with hosts and VMs written straight into
the database (half of them running), signs in with Debian's Chromium (Playwright) and
loads list pages one at a time, the kinds interleaved round by round. While it measures,
a "busy fleet" changes the status of `--churn` VMs a second in the database (as the
monitor would), so the change feed streams changes to the open page throughout.

A page load is the browser's own navigation timing: from the request to the end of the
load event (HTML, styles and scripts; the live feed connects after it). Prints p50/p95.
Usage:
    .venv/bin/python -m bench.portal_lists [--count 20000] [--rounds 20] [--churn 50] [--pg]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, Response, sync_playwright
from sqlalchemy import select, update
from tests.e2e.web.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.support.engine import start_engine
from tests.support.listing_rows import fill
from tests.support.no_nodes import NoNodes
from tests.support.postgres import scratch_database

from bench.api_list import percentile
from overt.engine.composition import Parts
from overt.engine.db.database import Database
from overt.engine.db.tables import Vm
from overt.engine.model.status import VmStatus


def pages_of(count: int) -> list[tuple[str, str]]:
    middle = max(1, count // 200)
    return [
        ("VMs, first page", "/vms"),
        (f"VMs, page {middle}", f"/vms?page={middle}"),
        ("VMs by CPU use, descending", "/vms?sort=cpu&order=desc"),
        ("VMs by host", "/vms?sort=host"),
        ("VMs, search status=up and name=vm-00*",
         "/vms?search=status%3Dup+and+name%3Dvm-00*"),
        ("VMs, search host=host-0004*", "/vms?search=host%3Dhost-0004*"),
        ("hosts, first page", "/hosts"),
        ("hosts by VMs running, descending", "/hosts?sort=vms&order=desc"),
        ("hosts, search status=up and name=host-00*",
         "/hosts?search=status%3Dup+and+name%3Dhost-00*"),
    ]


@contextlib.contextmanager
def database(pg: bool) -> Iterator[str | None]:
    if not pg:
        yield None
        return
    with scratch_database("bench_portal") as url:
        yield url


class Churn:
    """A busy fleet: `per_s` VM status changes a second, written in batches every 0.2 s."""

    def __init__(self, url: str, count: int, per_s: int) -> None:
        self.url, self.count, self.per_s = url, count, per_s
        self.done = threading.Event()
        self.changes = 0
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        db = Database(self.url)
        pick = random.Random(7)  # noqa: S311 (a workload, not a secret)
        statuses = [VmStatus.UP, VmStatus.PAUSED, VmStatus.POWERING_UP, VmStatus.MIGRATING]
        try:
            while not self.done.is_set() and self.per_s > 0:
                names = [f"vm-{pick.randrange(0, self.count, 2):05d}"
                         for _ in range(max(1, self.per_s // 5))]
                async with db.transaction() as session:
                    await session.execute(update(Vm).where(Vm.name.in_(names)).values(
                        status=pick.choice(statuses), cpu_percent=pick.random() * 100))
                self.changes += len(names)
                await asyncio.sleep(0.2)
        finally:
            await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=20000, help="VMs (and as many hosts)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--churn", type=int, default=50, help="VM changes a second")
    parser.add_argument("--pg", action="store_true", help="PostgreSQL instead of SQLite")
    args = parser.parse_args()
    with database(args.pg) as url, tempfile.TemporaryDirectory() as data_dir:
        engine = start_engine(Path(data_dir), db=url, transport=NoNodes(),
                              parts=Parts(monitor=False))
        try:
            db_url = engine.runtime.settings.database_url()
            started = time.perf_counter()
            asyncio.run(fill(db_url, args.count))
            print(f"wrote {args.count} hosts and {args.count} VMs in "
                  f"{time.perf_counter() - started:.0f} s")
            asyncio.run(_check(db_url, args.count))
            churn = Churn(db_url, args.count, args.churn)
            churn.thread.start()
            try:
                run(engine.url.removesuffix("/ovirt-engine/api"), engine.password, args)
            finally:
                churn.done.set()
                churn.thread.join(timeout=10)
            print(f"the busy fleet made {churn.changes} VM changes meanwhile")
        finally:
            engine.stop()


async def _check(url: str, count: int) -> None:
    db = Database(url)
    async with db.transaction() as session:
        found = len((await session.execute(select(Vm.id))).all())
    await db.dispose()
    assert found >= count, f"only {found} VMs written"


LOAD_MS = """() => { const n = performance.getEntriesByType('navigation')[0];
  return [n.responseEnd - n.startTime, n.loadEventEnd - n.startTime]; }"""


RETRIES: list[str] = []


def _load(page: Page, path: str) -> Response | None:
    """Loads a page; again when Chromium saw the machine's network change meanwhile (other
    programs adding interfaces), which aborts its navigation (counted, and reported)."""
    for attempt in range(20):
        try:
            return page.goto(path, wait_until="load")
        except PlaywrightError as exc:
            if "ERR_NETWORK_CHANGED" not in str(exc) or attempt == 19:
                raise
            RETRIES.append(path)
            time.sleep(0.5)
    return None


def run(base: str, password: str, args: argparse.Namespace) -> None:
    kinds = pages_of(args.count)
    loads: dict[str, list[float]] = {label: [] for label, _ in kinds}
    served: dict[str, list[float]] = {label: [] for label, _ in kinds}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=base, ignore_https_errors=True)
        page = context.new_page()
        page.goto("/signin")
        page.get_by_label("User name").fill("admin@internal")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/")
        for label, path in kinds:  # warm up
            started = time.perf_counter()
            _load(page, path)
            print(f"warm-up: {label} in {time.perf_counter() - started:.1f} s", flush=True)
        for _ in range(args.rounds):
            for label, path in kinds:
                reply = _load(page, path)
                assert reply is not None and reply.ok, f"{path}: {reply and reply.status}"
                rows = page.locator("tbody tr[data-id]").count()
                assert rows > 0, f"{path} shows no rows"
                response_end, load_end = page.evaluate(LOAD_MS)
                served[label].append(response_end)
                loads[label].append(load_end)
        browser.close()
    backend = "PostgreSQL" if args.pg else "SQLite"
    print(f"engine with {args.count} hosts and {args.count} VMs on {backend}, "
          f"{args.churn} VM changes/s; {args.rounds} rounds, interleaved; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if RETRIES:
        print(f"{len(RETRIES)} page loads aborted by a network change, loaded again")
    for label, _ in kinds:
        print(f"{label:<44} load p50 {percentile(loads[label], 50):6.0f} ms   "
              f"p95 {percentile(loads[label], 95):6.0f} ms   "
              f"(HTML p50 {percentile(served[label], 50):5.0f} ms)")


if __name__ == "__main__":
    main()
