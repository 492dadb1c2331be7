"""The VM and host lists in Chromium: pages of 100 rows, sortable columns, a search box in
oVirt's search language, and live updates that fetch again only the rows that changed.

The engine (its API and worker, on SQLite, no node) has hosts and VMs written straight
into its database; the test changes a VM there, as the monitor would.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import delete, update

from overt.engine.composition import Parts
from overt.engine.db.database import Database
from overt.engine.db.tables import Host, Vm
from overt.engine.model.status import VmStatus
from tests.support.engine import RunningEngine, start_engine
from tests.support.listing_rows import fill
from tests.support.no_nodes import NoNodes

pytestmark = [pytest.mark.browser]

COUNT = 250  # three pages: 100, 100 and 50
T = TypeVar("T")


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Runs database work in a thread of its own: Playwright's loop runs in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="module")
def listed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    engine = start_engine(tmp_path_factory.mktemp("engine"), transport=NoNodes(),
                          parts=Parts(monitor=False))
    try:
        _run(fill(engine.runtime.settings.database_url(), COUNT))
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="module")
def signed_in(browser: Browser, listed: RunningEngine) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=listed.url.removesuffix("/ovirt-engine/api"),
                                  ignore_https_errors=True,
                                  viewport={"width": 1280, "height": 800})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto("/signin")
    page.get_by_label("User name").fill("admin@internal")
    page.get_by_label("Password").fill(listed.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")
    page.close()
    yield context
    context.close()


@pytest.fixture
def page(signed_in: BrowserContext) -> Iterator[Page]:
    page = signed_in.new_page()
    yield page
    page.close()


def _names(page: Page, table: str) -> list[str]:
    return page.locator(f"#{table} tbody tr[data-id] td:first-child").all_inner_texts()


def _change(engine: RunningEngine, vm_name: str, **values: object) -> None:
    """Changes a VM as the monitor would: straight in the database."""
    async def write() -> None:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                await session.execute(update(Vm).where(Vm.name == vm_name).values(**values))
        finally:
            await db.dispose()

    _run(write())


def _host_id(engine: RunningEngine, name: str) -> object:
    async def read() -> object:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                return (await session.execute(
                    Host.__table__.select().where(Host.name == name))).one().id
        finally:
            await db.dispose()

    return _run(read())


def test_the_vm_list_shows_pages_of_a_hundred(page: Page) -> None:
    page.goto("/vms")
    indicator = page.get_by_test_id("page-indicator")
    expect(indicator).to_have_text(f"Page 1 of 3 · 1–100 of {COUNT} VMs")
    names = _names(page, "vms")
    assert names == [f"vm-{n:05d}" for n in range(100)]
    nav = page.get_by_role("navigation", name="Pages of VMs")
    expect(nav.get_by_text("Previous")).to_have_attribute("aria-disabled", "true")

    nav.get_by_role("link", name="Next").click()
    expect(page).to_have_url(re.compile(r"/vms\?page=2$"))
    expect(indicator).to_have_text(f"Page 2 of 3 · 101–200 of {COUNT} VMs")
    assert _names(page, "vms") == [f"vm-{n:05d}" for n in range(100, 200)]

    # The keyboard reaches the pager's links like any other.
    nav.get_by_role("link", name="Next").focus()
    page.keyboard.press("Enter")
    expect(indicator).to_have_text(f"Page 3 of 3 · 201–250 of {COUNT} VMs")
    assert len(_names(page, "vms")) == 50
    expect(nav.get_by_text("Next")).to_have_attribute("aria-disabled", "true")

    # A page past the last shows the last.
    page.goto("/vms?page=99")
    expect(indicator).to_have_text(f"Page 3 of 3 · 201–250 of {COUNT} VMs")


def test_columns_sort_on_the_server_and_the_order_stays_in_the_url(page: Page) -> None:
    page.goto("/vms")
    name = page.locator("#vms th[data-column='name']")
    expect(name).to_have_attribute("aria-sort", "ascending")
    page.get_by_role("link", name=re.compile(r"^Sort by Name")).click()
    expect(page).to_have_url(re.compile(r"/vms\?order=desc$"))
    expect(name).to_have_attribute("aria-sort", "descending")
    assert _names(page, "vms")[:3] == ["vm-00249", "vm-00248", "vm-00247"]

    # By status: every down VM (the odd ones) before any up one, by name among equals.
    page.get_by_role("link", name=re.compile(r"^Sort by Status")).click()
    expect(page.locator("#vms th[data-column='status']")).to_have_attribute(
        "aria-sort", "ascending")
    assert _names(page, "vms") == [f"vm-{n:05d}" for n in range(1, 200, 2)]
    statuses = page.locator("#vms tbody tr td:nth-child(2)").all_inner_texts()
    assert set(statuses) == {"down"}

    # By host, descending: VMs without a host come first, then the highest host's.
    page.goto("/vms?sort=host&order=desc&page=2")
    expect(page.get_by_test_id("page-indicator")).to_contain_text("Page 2 of 3")
    hosts = page.locator("#vms tbody tr td:nth-child(3)").all_inner_texts()
    assert hosts[:25] == [""] * 25
    assert hosts[25:28] == ["host-00248", "host-00246", "host-00244"]

    # The same order from the API's search language: `sortby`.
    page.goto("/vms?search=sortby%20name%20desc")
    assert _names(page, "vms")[0] == "vm-00249"


def test_the_search_box_narrows_the_list_and_shows_mistakes_inline(page: Page) -> None:
    page.goto("/vms?sort=name&order=desc")
    search = page.get_by_role("searchbox", name="Search VMs")
    search.fill("name=vm-001* and status=up")
    search.press("Enter")
    expect(page.get_by_test_id("page-indicator")).to_have_text("Page 1 of 1 · 1–50 of 50 VMs")
    assert _names(page, "vms") == [f"vm-{n:05d}" for n in range(198, 99, -2)]
    assert "order=desc" in page.url and "search=name%3Dvm-001" in page.url
    expect(search).to_have_value("name=vm-001* and status=up")

    # Another object's field, as in the API: the VMs of one host.
    search.fill("host=host-00042")
    search.press("Enter")
    assert _names(page, "vms") == ["vm-00042"]

    # A mistake: the page says what is wrong, next to the box, and shows no rows.
    reply = page.goto("/vms?search=colour%3Dblue")
    assert reply is not None and reply.status == 400
    error = page.get_by_role("alert")
    expect(error).to_contain_text("cannot search by 'colour'")
    expect(page.get_by_role("searchbox", name="Search VMs")).to_have_attribute(
        "aria-invalid", "true")
    expect(page.locator("#vms tbody")).to_contain_text("No VMs match this search.")

    page.goto("/hosts")
    search = page.get_by_role("searchbox", name="Search hosts")
    search.fill("name=host-0000*")
    search.press("Enter")
    expect(page.get_by_test_id("page-indicator")).to_have_text(
        "Page 1 of 1 · 1–10 of 10 hosts")
    assert _names(page, "hosts") == [f"host-{n:05d}" for n in range(10)]


def _settled(page: Page, table: str) -> None:
    """Live, and the rows refreshed once (the resync after connecting)."""
    expect(page.locator("#live-status")).to_have_text("Live")
    expect(page.locator(f"#{table}")).to_have_attribute("data-refreshes", re.compile(r"\d"))


def test_a_changed_vm_refreshes_its_row_alone(page: Page, listed: RunningEngine) -> None:
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.goto("/vms")
    _settled(page, "vms")
    page.evaluate("""() => {
        window.keptRow = document.querySelector("tr[data-vm='vm-00003']");
        window.oldRow = document.querySelector("tr[data-vm='vm-00001']");
        window.keptTable = document.querySelector('#vms table');
    }""")
    asked.clear()
    try:
        _change(listed, "vm-00001", status=VmStatus.PAUSED)
        expect(page.get_by_test_id("vm-status-vm-00001")).to_have_text("paused")
        kept = page.evaluate("""() => ({
            row: document.contains(window.keptRow), table: document.contains(window.keptTable),
            old: document.contains(window.oldRow)})""")
        assert kept == {"row": True, "table": True, "old": False}
        fetched = [url for url in asked if "/fragments/" in url]
        assert fetched and all("/fragments/vms/rows?ids=" in url for url in fetched)
        assert all(url.endswith("ids=" + page.locator("tr[data-vm='vm-00001']")
                                .get_attribute("data-id")) for url in fetched)
        # A change to a VM of another page fetches nothing.
        asked.clear()
        _change(listed, "vm-00201", status=VmStatus.PAUSED)
        _change(listed, "vm-00001", status=VmStatus.DOWN)
        expect(page.get_by_test_id("vm-status-vm-00001")).to_have_text("down")
        assert not [url for url in asked if "/fragments/" in url and "vm-00201" in url]
        assert all("/fragments/vms/rows?ids=" in url and "%2C" not in url
                   for url in asked if "/fragments/" in url)
    finally:
        with contextlib.suppress(Exception):
            _change(listed, "vm-00001", status=VmStatus.DOWN)
            _change(listed, "vm-00201", status=VmStatus.DOWN)


def test_a_vm_starting_updates_its_hosts_count(page: Page, listed: RunningEngine) -> None:
    page.goto("/hosts?search=name%3Dhost-0000*")
    _settled(page, "hosts")
    row = page.locator("tr[data-host='host-00001']")
    expect(row.locator("td:nth-child(5)")).to_have_text("0")
    page.evaluate("() => { window.keptRow = document.querySelector(\"tr[data-host='host-00002']\"); }")
    host = _host_id(listed, "host-00001")
    try:
        _change(listed, "vm-00001", status=VmStatus.UP, host_id=host)
        expect(row.locator("td:nth-child(5)")).to_have_text("1")
        _change(listed, "vm-00001", status=VmStatus.DOWN, host_id=None)
        expect(row.locator("td:nth-child(5)")).to_have_text("0")
        assert page.evaluate("() => document.contains(window.keptRow)")
    finally:
        with contextlib.suppress(Exception):
            _change(listed, "vm-00001", status=VmStatus.DOWN, host_id=None)


def _remove(engine: RunningEngine, vm_name: str) -> None:
    async def write() -> None:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                await session.execute(delete(Vm).where(Vm.name == vm_name))
        finally:
            await db.dispose()

    _run(write())


def test_vms_added_and_removed_join_and_leave_the_page_shown(page: Page,
                                                             listed: RunningEngine) -> None:
    """Last in this module: it adds VMs (named apart from the others)."""
    page.goto("/vms?search=name%3Dextra-*")
    expect(page.locator("#live-status")).to_have_text("Live")
    expect(page.locator("#vms tbody")).to_contain_text("No VMs match this search.")
    _run(fill(listed.runtime.settings.database_url(), 3, prefix="extra-", first=COUNT))
    expect(page.locator("#vms tbody tr[data-id]")).to_have_count(3)
    expect(page.get_by_test_id("page-indicator")).to_have_text("Page 1 of 1 · 1–3 of 3 VMs")
    _remove(listed, "extra-vm-00251")
    expect(page.locator("#vms tbody tr[data-id]")).to_have_count(2)
    assert _names(page, "vms") == ["extra-vm-00250", "extra-vm-00252"]
    expect(page.get_by_test_id("page-indicator")).to_have_text("Page 1 of 1 · 1–2 of 2 VMs")
    # The table fetched again links to the list's page, as the page did.
    page.get_by_role("link", name=re.compile(r"^Sort by Name")).click()
    expect(page).to_have_url(re.compile(r"/vms\?search=name%3Dextra-%2A&order=desc$"))
    assert _names(page, "vms") == ["extra-vm-00252", "extra-vm-00250"]
