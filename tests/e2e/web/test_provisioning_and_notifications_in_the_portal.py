"""Provisioning profiles and notifications (SNMP managers, event subscriptions) in
Chromium: what an administrator sees when adding, changing and removing them, and when
bad input is refused (the reason by the form, what was typed kept, nothing changed)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.e2e.web.conftest import SCREENSHOTS, admin_page
from tests.support.engine import RunningEngine, start_engine
from tests.support.no_nodes import NoNodes

pytestmark = [pytest.mark.browser, pytest.mark.slow]
IMAGE = "node-1"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    """An engine with no nodes, serving one (dummy) node image."""
    running = start_engine(tmp_path_factory.mktemp("engine"), transport=NoNodes())
    image = running.runtime.settings.data_dir / "node-images" / IMAGE
    image.mkdir(parents=True)
    (image / "vmlinuz").write_bytes(b"kernel")
    (image / "initrd.img").write_bytes(b"initrd")
    yield running
    running.stop()


@pytest.fixture
def admin(browser: Browser, engine: RunningEngine) -> Iterator[Page]:
    with admin_page(browser, engine) as page:
        yield page


def _readable(page: Page, element: Locator) -> None:
    """Shown on screen, inside the window's width, at least a line of text high."""
    expect(element).to_be_visible()
    box = element.bounding_box()
    assert box is not None and box["height"] >= 16 and box["width"] >= 200, box
    width = page.viewport_size["width"] if page.viewport_size else 0
    assert box["x"] >= 0 and box["x"] + box["width"] <= width, box


def _fits(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


# The live badge's states: as the page is rendered (the change feed not answering yet),
# while the feed is refused (the browser retries), and live.
BADGE_STATES = ("Connecting…", "Reconnecting…", "Live")


def _with_badge(page: Page, state: str) -> None:
    """Reload the page with the change feed held (never answered), refused, or served."""
    page.unroute("**/events/stream*")
    if state == "Connecting…":
        page.route("**/events/stream*", lambda route: None)
    elif state == "Reconnecting…":
        page.route("**/events/stream*", lambda route: route.abort())
    page.reload(wait_until="domcontentloaded")
    expect(page.locator("#live-status")).to_have_text(state)


def _header_fits(page: Page, *, one_row: bool) -> None:
    """The header, measured on screen: one row (no taller than one nav link and its padding)
    or, wrapped, with the badge, the user and Sign out inside the window's width."""
    main_nav = page.get_by_role("navigation", name="Main")
    header = page.locator("header.top").bounding_box()
    link = main_nav.get_by_role("link", name="Events").bounding_box()
    assert header is not None and link is not None
    width = page.viewport_size["width"] if page.viewport_size else 0
    if one_row:
        assert header["height"] < 1.6 * link["height"], (header, link)
    for part in (page.locator("#live-status"), page.locator("header.top .user"),
                 page.get_by_role("button", name="Sign out")):
        expect(part).to_be_visible()
        box = part.bounding_box()
        assert box is not None and header["y"] <= box["y"] and \
            box["y"] + box["height"] <= header["y"] + header["height"], (part, box, header)
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, (part, box)
    assert _fits(page)


def test_a_provisioning_profile_refused_added_changed_and_removed(admin: Page) -> None:
    page = admin
    main_nav = page.get_by_role("navigation", name="Main")
    main_nav.get_by_role("link", name="Provisioning").click()
    expect(page.get_by_role("heading", name="Provisioning profiles")).to_be_visible()
    expect(main_nav.get_by_role("link", name="Provisioning")).to_have_attribute(
        "aria-current", "page")
    expect(page.get_by_test_id("node-images")).to_have_text(f"Node images served: {IMAGE}")
    expect(page.get_by_test_id("provisioning-profiles")).to_contain_text(
        "No provisioning profiles")
    # Twelve pages in the navigation: at 1280 px the header is still one row, whatever the
    # live badge says; on a phone it wraps and everything in it stays on screen.
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 800})
        for state in BADGE_STATES:
            _with_badge(page, state)
            _header_fits(page, one_row=width == 1280)
    page.set_viewport_size({"width": 1280, "height": 800})

    page.get_by_role("link", name="New provisioning profile").click()
    page.get_by_label("Name").fill("rack1")
    page.get_by_label("Node image").fill("no-such-image")
    page.get_by_label("Kernel arguments").fill("console=ttyS0")
    page.get_by_role("button", name="Add provisioning profile").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text(
        "'no-such-image' is not a node image this engine serves (it has: node-1)")
    _readable(page, alert)
    expect(page.get_by_label("Kernel arguments")).to_have_value("console=ttyS0")
    page.get_by_label("Node image").fill(IMAGE)
    page.get_by_label("Cluster").select_option(label="Default")
    page.get_by_role("button", name="Add provisioning profile").click()
    expect(page).to_have_url(re.compile(r"/provisioningprofiles$"))
    row = page.locator("tr[data-profile='rack1']")
    for text in ("default (any machine)", IMAGE, "console=ttyS0", "Default"):
        expect(row).to_contain_text(text)
    expect(page.locator("tr[data-profile]")).to_have_count(1)

    page.get_by_role("link", name="Edit rack1").click()
    expect(page.get_by_label("Node image")).to_have_value(IMAGE)
    page.get_by_label("MAC address").fill("52:54:00:AA:BB:CC")
    page.get_by_role("button", name="Save").click()
    expect(row).to_contain_text("52:54:00:aa:bb:cc")

    row.get_by_role("button", name="Remove rack1").click()
    expect(page.get_by_role("heading", name="Remove provisioning profile rack1?")).to_be_visible()
    page.get_by_role("button", name="Remove", exact=True).click()
    expect(page).to_have_url(re.compile(r"/provisioningprofiles$"))
    expect(page.locator("tr[data-profile]")).to_have_count(0)


def test_a_trap_target_refused_then_added_subscribed_to_and_removed(admin: Page) -> None:
    page = admin
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Notifications").click()
    expect(page.get_by_role("heading", name="Notifications", exact=True)).to_be_visible()
    managers = page.get_by_test_id("snmp-managers")
    expect(managers).to_contain_text("No SNMP managers")

    form = page.get_by_role("form", name="New SNMP manager")
    form.get_by_label("Name", exact=True).fill("noc")
    form.get_by_label("Address").fill("10.0.0.300")
    form.get_by_label("Community").fill("s3cret-community")
    form.get_by_role("button", name="Add manager").click()
    alert = page.locator("#manager-error")
    expect(alert).to_contain_text("'10.0.0.300' is not an address or name")
    _readable(page, alert)
    expect(managers).to_contain_text("No SNMP managers")
    form = page.get_by_role("form", name="New SNMP manager")
    expect(form.get_by_label("Address")).to_have_value("10.0.0.300")
    expect(form.get_by_label("Community")).to_have_value("")  # a secret is typed again

    form.get_by_label("Address").fill("192.0.2.8")
    form.get_by_label("Version").select_option("v3")
    form.get_by_label("User", exact=True).fill("trapper")
    form.get_by_label("Authentication passphrase").fill("auth-pass-0001")
    form.get_by_label("Privacy passphrase").fill("priv-pass-0001")
    form.get_by_role("button", name="Add manager").click()
    expect(page).to_have_url(re.compile(r"/notifications$"))
    row = page.locator("tr[data-manager='noc']")
    for text in ("192.0.2.8", "162", "v3 (authPriv, SHA/AES)", "trapper", "0x80001f8804"):
        expect(row).to_contain_text(text)

    subscribe = page.get_by_role("form", name="New subscription")
    expect(subscribe.get_by_label("User")).to_have_value(re.compile(r"^[0-9a-f-]{36}$"))
    subscribe.get_by_label("Event").select_option("host_failure")
    subscribe.get_by_label("Manager").select_option("noc")
    subscribe.get_by_role("button", name="Subscribe").click()
    subscription = page.locator("tr[data-subscription='admin@internal/host_failure']")
    expect(subscription).to_contain_text("noc")
    expect(subscription).to_contain_text("snmp")

    # Edited: a new address; its passphrases, left empty, stay.
    row.get_by_role("link", name="Edit manager noc").click()
    edit = page.get_by_role("form", name="Edit SNMP manager noc")
    expect(edit.get_by_label("Version")).to_have_value("v3")
    expect(edit.get_by_label("Authentication passphrase")).to_have_value("")
    edit.get_by_label("Address").fill("noc .example")
    edit.get_by_role("button", name="Save").click()
    expect(page.locator("#manager-error")).to_contain_text("is not an address or name")
    edit = page.get_by_role("form", name="Edit SNMP manager noc")
    edit.get_by_label("Address").fill("192.0.2.9")
    edit.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/notifications$"))
    expect(row).to_contain_text("192.0.2.9")
    expect(row).to_contain_text("v3 (authPriv, SHA/AES)")
    page.screenshot(path=str(SCREENSHOTS / "notifications.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 800})  # a phone
    expect(page.get_by_role("button", name="Add manager")).to_be_visible()
    assert _fits(page)
    page.set_viewport_size({"width": 1280, "height": 800})

    row.get_by_role("button", name="Remove manager noc").click()
    expect(page.locator("#managers-error")).to_contain_text(
        "SNMP manager noc is named by subscriptions to host_failure: remove those first")
    expect(page.locator("tr[data-manager='noc']")).to_be_visible()
    page.get_by_role("button", name="Unsubscribe admin@internal from host_failure").click()
    expect(page.get_by_test_id("event-subscriptions")).to_contain_text("No event subscriptions")
    page.get_by_role("button", name="Remove manager noc").click()
    expect(managers).to_contain_text("No SNMP managers")
