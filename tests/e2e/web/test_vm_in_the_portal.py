"""A VM's life in the portal, as an administrator lives it: create it from the test guest's
image, start it and watch it come up without reloading, use its console, shut it down,
remove it. Screenshots for docs/ are taken on the way, so they stay true."""

from __future__ import annotations

import re
import secrets

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.web.conftest import SCREENSHOTS, sign_in
from tests.e2e.web.screen import Shot, shot_of
from tests.support.demo import Demo, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.vm, pytest.mark.slow]

# The graphs of a host or VM page: the points in each uPlot's data, and the pixels of
# the first series' stroke that uPlot drew on its canvas.
GRAPHS = """() => Array.from(document.querySelectorAll('figure.graph')).map(figure => {
  const canvas = figure.querySelector('canvas');
  let stroke = 0;
  if (canvas && canvas.width && canvas.height) {
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 0; i < data.length; i += 4) {
      if (Math.abs(data[i] - 37) < 40 && Math.abs(data[i + 1] - 99) < 40
          && Math.abs(data[i + 2] - 235) < 40 && data[i + 3] > 200) stroke++;
    }
  }
  return {points: Number(figure.dataset.points || 0), stroke: stroke};
})"""


def graph_points(page: Page) -> tuple[int, int]:
    """Points plotted in the first graph (CPU) and the pixels of its line."""
    graphs = page.evaluate(GRAPHS)
    return (graphs[0]["points"], graphs[0]["stroke"]) if graphs else (0, 0)


def _labels_on_every_control(page: Page) -> list[str]:
    return list(page.evaluate("""() => Array.from(document.querySelectorAll(
        'main input:not([type=hidden]), main select, main button, main textarea'))
        .filter(el => !(el.labels && el.labels.length) && !el.textContent.trim()
                && !el.getAttribute('aria-label'))
        .map(el => el.outerHTML)"""))


def test_a_vm_from_creation_to_removal(page: Page, web_demo: Demo) -> None:
    name = f"web-{secrets.token_hex(3)}"
    vm_id = None
    try:
        sign_in(page, web_demo)
        # Other VMs of this machine's libvirt may show up as external VMs: count only hosts.
        expect(page.get_by_role("heading", name="Needs attention")).to_be_visible()
        expect(page.get_by_test_id("total-hosts-up")).to_have_text("1")
        page.get_by_role("link", name="Hosts", exact=True).click()
        expect(page.get_by_test_id("host-status-local")).to_have_text("up")

        page.goto("/vms")
        page.get_by_role("link", name="New VM").click()
        assert _labels_on_every_control(page) == []
        page.get_by_label("Name", exact=True).fill(name)
        page.get_by_label("Memory (MiB)").fill("256")
        page.get_by_label("From an image").check()
        image = page.get_by_label("Image (template)")
        image.select_option(image.locator("option", has_text="test-guest").get_attribute("value"))
        network = page.get_by_label("Network interface")
        network.select_option(network.locator("option", has_text="ovirtmgmt").get_attribute("value"))
        page.get_by_role("button", name="Create VM").click()
        expect(page.get_by_role("heading", name=f"VM {name}")).to_be_visible()
        vm_id = page.url.rsplit("/", 1)[-1]
        loaded_at = page.evaluate("performance.timeOrigin")
        expect(page.get_by_test_id("vm-status")).to_have_text("down")
        # The thin copy of the image is made by a job; the page shows it become ready.
        expect(page.get_by_test_id("disk-status")).to_have_text("ok", timeout=60_000)
        expect(page.get_by_text("No samples yet")).to_be_visible()
        assert graph_points(page) == (0, 0)

        page.get_by_role("button", name="Start").click()
        expect(page.locator("#action-result")).to_contain_text(f"Launching VM {name}")
        expect(page.get_by_test_id("vm-status")).to_have_text("up", timeout=90_000)
        expect(page.get_by_test_id("vm-host")).to_have_text("local")
        expect(page.locator("#vm-activity")).to_contain_text("started on host local")
        # Migrate: its own host is the only one, so the chooser offers the scheduler's
        # choice alone, and asking says why it cannot move (its disk is local).
        expect(page.get_by_test_id("migrate-host").locator("option")).to_have_text(
            ["automatic (the scheduler chooses)"])
        expect(page.locator("button[data-action='cancelmigration']")).to_have_count(0)
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("button[data-action='migrate']").click()
        expect(page.locator("#action-result")).to_contain_text(
            re.compile(f"Cannot migrate VM {name}: disk {name}\\S* is on local storage"))
        expect(page.get_by_test_id("vm-status")).to_have_text("up")
        # The graphs fill as the VM's samples arrive, and keep moving.
        first = wait_until(lambda: (g := graph_points(page))[0] > 0 and g, 60,
                           "the VM's first sample on its graphs")
        expect(page.get_by_text("No samples yet")).to_be_hidden()
        later = wait_until(lambda: (g := graph_points(page))[0] > first[0] and g, 60,
                           "a new sample on the VM's graphs")
        assert later[1] > 0  # uPlot drew the CPU line
        assert page.evaluate("performance.timeOrigin") == loaded_at  # no reload happened

        # The oVirt SDK's ticket action on the same VM.
        conn = web_demo.connect()
        try:
            ticket = conn.system_service().vms_service().vm_service(vm_id).ticket()
            assert ticket.value and 1 <= len(ticket.value) <= 8
            assert ticket.expiry == 120
        finally:
            conn.close()

        page.goto("/")
        expect(page.get_by_test_id("total-vms-running")).not_to_have_text("0")
        page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)
        page.goto(f"/vms/{vm_id}")
        expect(page.get_by_test_id("vm-status")).to_have_text("up")

        page.get_by_role("link", name="Console").click()
        expect(page.locator("#console-status")).to_contain_text("Connected", timeout=30_000)
        _check_the_console_screen(page)
        page.screenshot(path=str(SCREENSHOTS / "console.png"))

        page.goto(f"/vms/{vm_id}")
        wait_until(lambda: graph_points(page)[0] >= 2, 30, "the VM's graphs to load")
        page.screenshot(path=str(SCREENSHOTS / "vm.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 800})  # a phone
        expect(page.get_by_role("button", name="Shut down")).to_be_visible()
        # Chromium fires `resize` at its next frame: the graphs shrink then, not at once.
        wait_until(lambda: page.evaluate(
            "document.documentElement.scrollWidth <= window.innerWidth + 1"), 10,
            "the page to fit a phone's screen", every=0.1)
        page.set_viewport_size({"width": 1280, "height": 800})

        page.get_by_role("button", name="Shut down").click()
        expect(page.get_by_test_id("vm-status")).to_have_text("down", timeout=90_000)

        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Remove", exact=True).click()
        expect(page).to_have_url(re.compile(r"/vms$"), timeout=60_000)
        expect(page.locator(f"tr[data-vm='{name}']")).to_have_count(0)

        page.goto("/events")
        expect(page.locator("#events")).to_contain_text(f"VM {name} was removed")
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(re.compile(r"/signin$"))
        vm_id = None
    finally:
        if vm_id is not None:
            web_demo.destroy_leftover_domains([vm_id])


def _check_the_console_screen(page: Page) -> None:
    """The guest's screen as the user sees it: large enough, its text on it, moving, and
    what is typed into it reaching the guest (which echoes it on green)."""
    canvas = page.locator("#console-screen canvas")
    box = canvas.bounding_box()
    assert box is not None and box["width"] >= 640, box
    buffer = page.evaluate("() => { const c = document.querySelector('#console-screen canvas');"
                           " return [c.width, c.height]; }")
    assert box["width"] / box["height"] == pytest.approx(buffer[0] / buffer[1], rel=0.02)

    def text_on_screen() -> Shot | None:
        shot = shot_of(page, canvas)
        return shot if shot.light > 0.005 * shot.pixels else None

    first = wait_until(text_on_screen, 30, "the guest's text on the console's screen")
    assert first.dark > 0.5 * first.pixels  # light grey text on black
    assert first.green == 0
    wait_until(lambda: (s := text_on_screen()) and s.png != first.png, 15,
               "the guest's heartbeat to change the screen", every=0.5)

    # Keys typed while the guest still boots are lost (a user types again): type a word
    # until the guest echoes it.
    word = "k" + secrets.token_hex(3)

    def typed_and_echoed() -> Shot | None:
        canvas.click()
        page.keyboard.type(word)
        page.keyboard.press("Enter")
        try:
            return wait_until(lambda: (s := shot_of(page, canvas)).green > 0 and s, 5,
                              "the guest to echo what was typed")
        except AssertionError:
            return None

    echoed = wait_until(typed_and_echoed, 60, "the guest to echo what was typed", every=0)
    # The guest prints " overt-test-guest: typed WORD " on green, on an 80-column screen.
    line = f" overt-test-guest: typed {word} "
    assert echoed.green_width / echoed.width == pytest.approx(len(line) / 80, abs=0.02)
