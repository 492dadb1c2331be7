"""A VM's snapshots on its page in the portal, against the demo's real node: take one of
a down VM, preview it and undo the preview, then remove it after the page asked; the API
says the same at each step, and the section fits the screen. Of a running VM, "Save
memory" is ticked (as oVirt's dialog): the demo's disks are on its local domain, so the
snapshot with memory is refused with the reason on screen and nothing made; unticked,
the disks are snapshotted live and the row says no memory was saved. (A snapshot with
memory needs a shared domain: tests/integration/engine/jobs/test_memory_snapshots.py and
the lab; the page's memory column and the "Restore memory" question are checked over HTTP
in tests/integration/engine/web/test_vm_snapshots_page.py.)"""

from __future__ import annotations

import contextlib
import secrets

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.web.conftest import SCREENSHOTS, sign_in
from tests.support.demo import Demo, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]
MIB = 2**20


def test_a_snapshot_is_taken_previewed_undone_and_removed_from_the_vm_page(
        page: Page, web_demo: Demo) -> None:
    conn = web_demo.connect()
    system = conn.system_service()
    vms = system.vms_service()
    name = f"web-snap-{secrets.token_hex(2)}"
    vm = vms.add(types.Vm(name=name, cluster=types.Cluster(name="Default"),
                          template=types.Template(name="test-guest"), memory=256 * MIB))
    service = vms.vm_service(vm.id)
    snapshots = service.snapshots_service()

    def regular() -> list[tuple[str, str]]:
        return [(s.description, str(s.snapshot_status)) for s in snapshots.list()
                if s.snapshot_type == types.SnapshotType.REGULAR]
    try:
        disk = conn.follow_link(service.disk_attachments_service().list()[0].disk)
        wait_until(lambda: system.disks_service().disk_service(disk.id).get().status
                   == types.DiskStatus.OK, 60, "the VM's disk to be created")
        sign_in(page, web_demo)
        page.goto(f"/vms/{vm.id}")
        table = page.get_by_test_id("vm-snapshots")
        expect(table).to_contain_text("No snapshots.")

        form = page.get_by_role("form", name="Take a snapshot")
        form.get_by_label("Description").fill("before upgrade")
        form.get_by_role("button", name="Take snapshot").click()
        row = page.locator("tr[data-snapshot='before upgrade']")
        expect(row.get_by_test_id("snapshot-status")).to_have_text("ok")
        expect(row.locator("td").nth(2)).to_have_text("1")  # its one disk
        assert regular() == [("before upgrade", "ok")]
        for part in (page.locator("section[aria-labelledby='vm-snapshots-h']"), table):
            box = part.bounding_box()  # the section and its table fit a 1280 px screen
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 1280, box

        row.get_by_role("button", name="Preview snapshot before upgrade").click()
        expect(page.get_by_test_id("snapshot-preview")).to_contain_text(
            "The VM runs from snapshot 'before upgrade' (a preview).")
        expect(row.get_by_test_id("snapshot-status")).to_have_text("in preview")
        assert regular() == [("before upgrade", "in_preview")]
        expect(form).to_have_count(0)  # no new snapshot while a preview lasts

        page.get_by_role("button", name="Undo preview").click()
        expect(page.get_by_test_id("snapshot-preview")).to_have_count(0)
        expect(row.get_by_test_id("snapshot-status")).to_have_text("ok")
        assert regular() == [("before upgrade", "ok")]

        row.get_by_role("button", name="Remove snapshot before upgrade").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(
            f"Remove snapshot 'before upgrade' of VM {name}?")
        assert regular() == [("before upgrade", "ok")]  # asking changed nothing
        page.get_by_role("button", name="Remove").click()
        expect(table).to_contain_text("No snapshots.")
        assert regular() == []
    finally:
        with contextlib.suppress(sdk.Error):
            service.remove()
        conn.close()


def test_a_running_vms_snapshot_offers_memory_and_without_it_is_taken_live(
        page: Page, web_demo: Demo) -> None:
    conn = web_demo.connect()
    system = conn.system_service()
    vms = system.vms_service()
    name = f"web-memsnap-{secrets.token_hex(2)}"
    vm = vms.add(types.Vm(name=name, cluster=types.Cluster(name="Default"),
                          template=types.Template(name="test-guest"), memory=256 * MIB))
    service = vms.vm_service(vm.id)
    snapshots = service.snapshots_service()

    def regular() -> list[tuple[str, str, bool]]:
        return [(s.description, str(s.snapshot_status), bool(s.persist_memorystate))
                for s in snapshots.list() if s.snapshot_type == types.SnapshotType.REGULAR]
    try:
        disk = conn.follow_link(service.disk_attachments_service().list()[0].disk)
        wait_until(lambda: system.disks_service().disk_service(disk.id).get().status
                   == types.DiskStatus.OK, 60, "the VM's disk to be created")
        service.start()
        wait_until(lambda: service.get().status == types.VmStatus.UP, 90, "the VM to run")
        sign_in(page, web_demo)
        page.goto(f"/vms/{vm.id}")
        expect(page.get_by_test_id("vm-status")).to_have_text("up")
        form = page.get_by_role("form", name="Take a snapshot")
        save_memory = form.get_by_label("Save memory")
        expect(save_memory).to_be_checked()  # a running VM: on, as oVirt's dialog
        expect(form).to_contain_text("with its memory if \"Save memory\" is ticked")

        form.get_by_label("Description").fill("warm")
        form.get_by_role("button", name="Take snapshot").click()
        expect(page.get_by_test_id("snapshot-error")).to_contain_text(
            f"Cannot create a snapshot with memory of VM {name}")
        expect(page.get_by_test_id("snapshot-error")).to_contain_text(
            "not on an NFS or iSCSI domain")
        assert regular() == []  # refused: nothing made

        page.goto(f"/vms/{vm.id}")
        form = page.get_by_role("form", name="Take a snapshot")
        form.get_by_label("Save memory").uncheck()
        form.get_by_label("Description").fill("disks only")
        form.get_by_role("button", name="Take snapshot").click()
        row = page.locator("tr[data-snapshot='disks only']")
        expect(row.get_by_test_id("snapshot-status")).to_have_text("ok", timeout=60_000)
        expect(row.get_by_test_id("snapshot-memory")).to_have_text("no")
        expect(page.locator("thead th").filter(has_text="Memory")).to_have_count(1)
        assert regular() == [("disks only", "ok", False)]
        assert service.get().status == types.VmStatus.UP  # taken live
        page.locator("section[aria-labelledby='vm-snapshots-h']").screenshot(
            path=str(SCREENSHOTS / "vm-snapshots.png"))
    finally:
        with contextlib.suppress(sdk.Error):
            service.stop()
            wait_until(lambda: service.get().status == types.VmStatus.DOWN, 60,
                       "the VM to stop")
        with contextlib.suppress(sdk.Error):
            service.remove()
        conn.close()
