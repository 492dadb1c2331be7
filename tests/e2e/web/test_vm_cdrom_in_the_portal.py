"""A VM's cdrom on its page in the portal: put an ISO of the data center in a down VM's
drive for its next run (the API then says the same), and eject it."""

from __future__ import annotations

import contextlib
import secrets

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.web.conftest import sign_in
from tests.support.demo import Demo, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]
MIB = 2**20
CDROM = "00000000-0000-0000-0000-000000000000"


def test_a_down_vms_cd_is_changed_and_ejected_from_the_vm_page(page: Page,
                                                                web_demo: Demo) -> None:
    conn = web_demo.connect()
    system = conn.system_service()
    domain = system.storage_domains_service().list(search="name=local")[0]
    disks = system.disks_service()
    iso = disks.add(types.Disk(name=f"web-{secrets.token_hex(2)}.iso",
                               content_type=types.DiskContentType.ISO,
                               format=types.DiskFormat.RAW, provisioned_size=MIB,
                               storage_domains=[types.StorageDomain(id=domain.id)]))
    vm = system.vms_service().add(types.Vm(
        name=f"web-cd-{secrets.token_hex(2)}", cluster=types.Cluster(name="Default"),
        template=types.Template(name="Blank"), memory=256 * MIB))
    cdrom = system.vms_service().vm_service(vm.id).cdroms_service().cdrom_service(CDROM)
    try:
        wait_until(lambda: disks.disk_service(iso.id).get().status == types.DiskStatus.OK, 60,
                   "the ISO disk to be created")
        sign_in(page, web_demo)
        page.goto(f"/vms/{vm.id}")
        expect(page.get_by_test_id("cdrom-media")).to_have_text("nothing")
        form = page.get_by_role("form", name="Change the CD")
        form.get_by_label("ISO image").select_option(iso.id)
        form.get_by_role("button", name="Change CD").click()
        expect(page.get_by_test_id("cdrom-media")).to_have_text(iso.name)
        assert cdrom.get().file.id == iso.id  # the next run's media, as the API says

        page.get_by_role("button", name="Eject").click()
        expect(page.get_by_test_id("cdrom-media")).to_have_text("nothing")
        assert cdrom.get().file is None

        # An image gone meanwhile (its option still on a page open elsewhere): the page
        # says why, by the CD, and the drive stays empty.
        gone = "0badc0de-0000-4000-8000-000000000000"
        form.get_by_label("ISO image").evaluate(
            "(select, id) => { select.add(new Option('gone.iso', id)); select.value = id; }",
            gone)
        form.get_by_role("button", name="Change CD").click()
        expect(page.get_by_test_id("cdrom-error")).to_contain_text(gone)
        expect(page.get_by_test_id("cdrom-media")).to_have_text("nothing")
        assert cdrom.get().file is None
    finally:
        with contextlib.suppress(sdk.Error):
            system.vms_service().vm_service(vm.id).remove()
        with contextlib.suppress(sdk.Error):
            disks.disk_service(iso.id).remove()
        conn.close()
