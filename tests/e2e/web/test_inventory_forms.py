"""The portal's forms for data centers, clusters and networks, in Chromium: what an
administrator sees when adding, changing and removing them, and when one is refused."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.support.engine import RunningEngine, start_engine
from tests.support.no_nodes import NoNodes

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    """An engine with no nodes is enough: these forms only change the inventory."""
    running = start_engine(tmp_path_factory.mktemp("engine"), transport=NoNodes())
    yield running
    running.stop()


@pytest.fixture
def admin(browser: Browser, engine: RunningEngine) -> Iterator[Page]:
    base = engine.url.removesuffix("/ovirt-engine/api")
    context = browser.new_context(base_url=base, ignore_https_errors=True,
                                  viewport={"width": 1280, "height": 800})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto("/signin")
    page.get_by_label("User name").fill("admin@internal")
    page.get_by_label("Password").fill(engine.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")
    yield page
    context.close()


def _row(page: Page, name: str) -> Locator:
    return page.get_by_role("row").filter(has=page.get_by_role("cell", name=name, exact=True))


def test_a_data_center_and_its_cluster_from_creation_to_removal(admin: Page) -> None:
    page = admin
    page.goto("/datacenters")
    page.get_by_role("link", name="New data center").click()
    expect(page.get_by_role("heading", name="New data center")).to_be_visible()
    page.get_by_label("Name").fill("branch-office")
    page.get_by_label("Description").fill("the branch office")
    page.get_by_role("button", name="Add data center").click()
    expect(page).to_have_url(re.compile(r"/datacenters$"))
    row = _row(page, "branch-office")
    expect(row).to_contain_text("the branch office")
    expect(row).to_contain_text("shared")

    # A duplicate name is refused on the form, which keeps what was typed.
    page.get_by_role("link", name="New data center").click()
    page.get_by_label("Name").fill("branch-office")
    page.get_by_label("Description").fill("a second one")
    page.get_by_role("button", name="Add data center").click()
    expect(page.get_by_role("alert")).to_contain_text("The name 'branch-office' is already in use")
    expect(page.get_by_label("Description")).to_have_value("a second one")

    page.goto("/clusters/new")
    page.get_by_label("Name").fill("branch-hosts")
    page.get_by_label("Data center").select_option(label="branch-office")
    page.get_by_label("Memory overcommit (%)").fill("150")
    page.get_by_role("button", name="Add cluster").click()
    expect(page).to_have_url(re.compile(r"/clusters$"))
    expect(_row(page, "branch-hosts")).to_contain_text("branch-office")
    expect(_row(page, "branch-hosts")).to_contain_text("150%")

    # The data center still has a cluster: removing it is refused, with the reason.
    page.goto("/datacenters")
    page.get_by_role("button", name="Remove branch-office").click()
    expect(page.get_by_role("heading", name="Remove data center branch-office?")).to_be_visible()
    page.get_by_role("button", name="Remove", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("it still has 1 cluster(s)")
    page.goto("/datacenters")
    expect(_row(page, "branch-office")).to_be_visible()

    page.goto("/clusters")
    page.get_by_role("link", name="Edit branch-hosts").click()
    expect(page.get_by_label("Memory overcommit (%)")).to_have_value("150")
    page.get_by_label("Memory overcommit (%)").fill("200")
    page.get_by_label("Description").fill("rack 4")
    page.get_by_role("button", name="Save").click()
    expect(_row(page, "branch-hosts")).to_contain_text("200%")
    expect(_row(page, "branch-hosts")).to_contain_text("rack 4")
    page.get_by_role("button", name="Remove branch-hosts").click()
    page.get_by_role("button", name="Remove", exact=True).click()
    expect(page).to_have_url(re.compile(r"/clusters$"))
    expect(page.get_by_role("cell", name="branch-hosts", exact=True)).to_have_count(0)

    page.goto("/datacenters")
    page.get_by_role("link", name="Edit branch-office").click()
    page.get_by_label("Name").fill("branch-2")
    page.get_by_role("button", name="Save").click()
    expect(_row(page, "branch-2")).to_be_visible()
    page.get_by_role("button", name="Remove branch-2").click()
    page.get_by_role("button", name="Remove", exact=True).click()
    expect(page).to_have_url(re.compile(r"/datacenters$"))
    expect(page.get_by_role("cell", name="branch-2", exact=True)).to_have_count(0)
    expect(page.get_by_role("cell", name="Default", exact=True)).to_be_visible()


def test_a_network_from_creation_to_removal(admin: Page) -> None:
    page = admin
    page.goto("/networks")
    page.get_by_role("link", name="New network").click()
    page.get_by_label("Name").fill("ovirtmgmt")
    page.get_by_label("VLAN id").fill("40")
    page.get_by_role("button", name="Add network").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "The name 'ovirtmgmt' is already in use in data center Default")
    expect(page.get_by_label("VLAN id")).to_have_value("40")
    page.get_by_label("Name").fill("backup")
    page.get_by_label("MTU").fill("9000")
    page.get_by_label("migration").check()
    page.get_by_role("button", name="Add network").click()
    expect(page).to_have_url(re.compile(r"/networks$"))
    row = _row(page, "backup")
    for text in ("40", "9000", "migration, vm", "Default"):
        expect(row).to_contain_text(text)

    page.get_by_role("link", name="Edit backup").click()
    expect(page.get_by_label("VLAN id")).to_have_value("40")
    page.get_by_label("VLAN id").fill("")
    page.get_by_role("button", name="Save").click()
    expect(_row(page, "backup")).to_contain_text("none")

    # The management network stays.
    page.get_by_role("button", name="Remove ovirtmgmt").click()
    page.get_by_role("button", name="Remove", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("it is the management network")

    page.goto("/networks")
    page.get_by_role("button", name="Remove backup").click()
    page.get_by_role("button", name="Remove", exact=True).click()
    expect(page).to_have_url(re.compile(r"/networks$"))
    expect(page.get_by_role("cell", name="backup", exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Remove ovirtmgmt")).to_be_visible()


@pytest.mark.parametrize(("path", "heading"), [
    ("/", "Dashboard"), ("/datacenters", "Data centers"), ("/clusters", "Clusters"),
    ("/hosts", "Hosts"), ("/storage", "Storage domains"), ("/networks", "Networks"),
    ("/vms", "Virtual machines"), ("/vms/new", "New virtual machine"), ("/jobs", "Jobs"),
    ("/events", "Events")])
def test_every_inventory_page_shows_its_content(admin: Page, path: str, heading: str) -> None:
    response = admin.goto(path)
    assert response is not None and response.status == 200
    expect(admin.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    expect(admin.get_by_text("Something went wrong")).to_have_count(0)
