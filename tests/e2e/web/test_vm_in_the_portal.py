"""A VM's life in the portal, as an administrator lives it: create it from the test guest's
image, start it and watch it come up without reloading, use its console, shut it down,
remove it. Screenshots for docs/ are taken on the way, so they stay true."""

from __future__ import annotations

import hashlib
import re
import secrets

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.web.conftest import SCREENSHOTS, sign_in
from tests.support.demo import Demo, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.vm, pytest.mark.slow]

CANVAS_PIXELS = """() => {
  const canvas = document.querySelector('#console-screen canvas');
  if (!canvas || !canvas.width || !canvas.height) return null;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let lit = 0;
  for (let i = 0; i < data.length; i += 4) { if (data[i] + data[i + 1] + data[i + 2] > 60) lit++; }
  return {lit: lit, width: canvas.width, height: canvas.height,
          sample: Array.from(data.filter((_, i) => i % 97 === 0)).join(',')};
}"""


def _screen(page: Page) -> tuple[int, str] | None:
    pixels = page.evaluate(CANVAS_PIXELS)
    if not pixels or not pixels["lit"]:
        return None
    return int(pixels["lit"]), hashlib.sha256(pixels["sample"].encode()).hexdigest()


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
        page.get_by_label("Name").fill(name)
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

        page.get_by_role("button", name="Start").click()
        expect(page.locator("#action-result")).to_contain_text(f"Launching VM {name}")
        expect(page.get_by_test_id("vm-status")).to_have_text("up", timeout=90_000)
        expect(page.get_by_test_id("vm-host")).to_have_text("local")
        assert page.evaluate("performance.timeOrigin") == loaded_at  # no reload happened
        expect(page.locator("#vm-activity")).to_contain_text("started on host local")

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
        page.screenshot(path=str(SCREENSHOTS / "vm.png"), full_page=True)

        page.get_by_role("link", name="Console").click()
        expect(page.locator("#console-status")).to_contain_text("Connected", timeout=30_000)
        first = wait_until(lambda: _screen(page), 30, "the guest's screen in the console")
        later = wait_until(lambda: (s := _screen(page)) and s[1] != first[1] and s, 15,
                           "the console's pixels to change (the guest's heartbeat)", every=0.5)
        assert later[0] > 0

        page.goto(f"/vms/{vm_id}")
        page.set_viewport_size({"width": 390, "height": 800})  # a phone
        expect(page.get_by_role("button", name="Shut down")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        page.set_viewport_size({"width": 1280, "height": 800})

        page.get_by_role("button", name="Shut down").click()
        expect(page.get_by_test_id("vm-status")).to_have_text("down", timeout=90_000)

        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Remove").click()
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
