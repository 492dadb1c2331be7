"""A running VM's network interfaces in the portal: add one (hot-plugged under QEMU), take
its link down, be told to unplug it before removing it, unplug it, remove it; a profile of
a network outside the VM's cluster is refused on the page."""

from __future__ import annotations

import contextlib
import secrets
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from playwright.sync_api import Page, expect

from overt.engine.queries.vm_spec import CONSOLE_LOG_DIR
from overt.lab.guest import BOOT_MARKER
from tests.e2e.web.conftest import sign_in
from tests.support.demo import Demo, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.vm, pytest.mark.slow]
MIB = 2**20
WIDER_THAN_THE_SCREEN = """() => Array.from(document.querySelectorAll('body *'))
    .filter(el => el.getBoundingClientRect().right > window.innerWidth + 1
                  && !(el.parentElement && el.parentElement.closest('.table-wrap')))
    .map(el => el.tagName + '.' + el.className + ' ' + Math.round(el.getBoundingClientRect().right))"""


def live_link(vm_id: str, mac: str) -> str | None:
    """The link state of the live domain's NIC with this MAC ("absent" when not plugged)."""
    xml = libvirt.open("qemu:///system").lookupByUUIDString(vm_id).XMLDesc()
    for interface in ET.fromstring(xml).findall("devices/interface"):
        found = interface.find("mac")
        if found is not None and found.get("address", "").lower() == mac.lower():
            link = interface.find("link")
            return "up" if link is None else link.get("state")
    return "absent"


def test_nics_of_a_running_vm_from_the_vm_page(page: Page, web_demo: Demo) -> None:
    conn = web_demo.connect()
    system = conn.system_service()
    vms = system.vms_service()
    vm = vms.add(types.Vm(name=f"web-nics-{secrets.token_hex(2)}",
                          cluster=types.Cluster(name="Default"),
                          template=types.Template(name="test-guest"), memory=256 * MIB))
    away = system.networks_service().add(types.Network(
        name="web-away", data_center=types.DataCenter(name="Default"), vlan=types.Vlan(id=322)))
    service = vms.vm_service(vm.id)
    try:
        disk = conn.follow_link(service.disk_attachments_service().list()[0].disk)
        wait_until(lambda: system.disks_service().disk_service(disk.id).get().status
                   == types.DiskStatus.OK, 60, "the VM's disk to be created")
        service.start()
        wait_until(lambda: service.get().status == types.VmStatus.UP, 90, "the VM to be up")
        serial = Path(CONSOLE_LOG_DIR) / f"{vm.id}.log"
        wait_until(lambda: serial.exists() and BOOT_MARKER in serial.read_text(), 60,
                   "the guest's boot marker")

        sign_in(page, web_demo)
        page.goto(f"/vms/{vm.id}")
        expect(page.get_by_test_id("vm-status")).to_have_text("up")
        expect(page.get_by_text("the interface is hot-plugged")).to_be_visible()
        form = page.get_by_role("form", name="Add a network interface")
        form.get_by_label("Name").fill("hot1")
        profiles = form.get_by_label("vNIC profile")
        profiles.select_option(profiles.locator("option", has_text="ovirtmgmt (ovirtmgmt)")
                               .get_attribute("value"))
        form.get_by_role("button", name="Add network interface").click()
        row = page.locator("tr[data-nic='hot1']")
        expect(row.get_by_test_id("nic-plugged")).to_have_text("yes")
        expect(row.get_by_test_id("nic-link")).to_have_text("up")
        mac = row.locator("code").inner_text()
        page.set_viewport_size({"width": 390, "height": 800})  # a phone: nothing sticks out
        # Chromium fires `resize` at its next frame: the graphs shrink then, not at once.
        wait_until(lambda: page.evaluate(WIDER_THAN_THE_SCREEN) == [], 10,
                   "nothing on the page to stick out of a phone's screen", every=0.1)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        page.set_viewport_size({"width": 1280, "height": 800})
        assert mac.startswith("56:6f:")
        wait_until(lambda: live_link(vm.id, mac) == "up", 60, "the NIC in the live domain")

        row.get_by_role("button", name="Link down hot1").click()
        expect(row.get_by_test_id("nic-link")).to_have_text("down")
        wait_until(lambda: live_link(vm.id, mac) == "down", 60, "the link to go down")

        row.get_by_role("button", name="Remove hot1").click()
        expect(page.get_by_test_id("nic-error")).to_contain_text("unplug it first")
        expect(row.get_by_test_id("nic-plugged")).to_have_text("yes")
        assert live_link(vm.id, mac) == "down"

        row.get_by_role("button", name="Unplug hot1").click()
        expect(row.get_by_test_id("nic-plugged")).to_have_text("no")
        wait_until(lambda: live_link(vm.id, mac) == "absent", 60, "the NIC to leave the domain")
        row.get_by_role("button", name="Remove hot1").click()
        expect(page.get_by_test_id("vm-nics")).to_contain_text("No network interfaces.")
        assert [n.name for n in service.nics_service().list()] == []

        form = page.get_by_role("form", name="Add a network interface")
        profiles = form.get_by_label("vNIC profile")
        profiles.select_option(profiles.locator("option", has_text="(web-away)")
                               .get_attribute("value"))
        form.get_by_role("button", name="Add network interface").click()
        expect(page.get_by_test_id("nic-error")).to_contain_text(
            "network web-away is not attached to cluster Default")
        expect(page.get_by_test_id("vm-nics")).to_contain_text("No network interfaces.")
        assert service.nics_service().list() == []
    finally:
        web_demo.destroy_leftover_domains([vm.id])
        with contextlib.suppress(sdk.Error, AssertionError):
            wait_until(lambda: service.get().status == types.VmStatus.DOWN, 60, "the VM down")
            service.remove()
        with contextlib.suppress(sdk.Error):
            system.networks_service().network_service(away.id).remove()
        conn.close()
