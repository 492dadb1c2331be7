"""The portal's Disks page in Chromium against the demo's real node and imageio: a disk
made from the New disk form shows in the list with its size; a refused one shows the
service's reason on the form (nothing made); a raw image picked from the browser's file
chooser is uploaded with its progress bar reaching 100 %, and downloaded back through the
SDK's flow (ovirt_imageio.client) it is byte for byte the file; a qcow2 file is refused
with how to convert it; Cancel during an upload removes its disk; Remove asks first."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import subprocess
from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from playwright.sync_api import Locator, Page, Route, expect

from tests.e2e.web.conftest import SCREENSHOTS, sign_in
from tests.support.demo import Demo, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]
MIB = 2**20


def _row(page: Page, name: str) -> Locator:
    return page.locator(f"tr[data-disk='{name}']")


def _disk_ok(system: sdk.services.SystemService, name: str) -> types.Disk:
    def found() -> types.Disk | None:
        disks = [d for d in system.disks_service().list(search=f"name={name}")
                 if d.name == name]
        return disks[0] if disks and disks[0].status == types.DiskStatus.OK else None
    return wait_until(found, 120, f"disk {name} to be ok")


def _download(demo: Demo, system: sdk.services.SystemService, disk_id: str, target: Path
              ) -> None:
    """The disk's guest data, as download_disk.py fetches it."""
    from ovirt_imageio import client
    transfers = system.image_transfers_service()
    transfer = transfers.add(types.ImageTransfer(
        disk=types.Disk(id=disk_id), direction=types.ImageTransferDirection.DOWNLOAD,
        format=types.DiskFormat.RAW))
    client.download(transfer.transfer_url, str(target), str(demo.ca_file), fmt="raw")
    service = transfers.image_transfer_service(transfer.id)
    service.finalize()
    wait_until(lambda: service.get().phase == types.ImageTransferPhase.FINISHED_SUCCESS, 60,
               "the download to end")


# ovirt_imageio.client's raw download leaves its own qemu-nbd socket for the collector.
@pytest.mark.filterwarnings("ignore::ResourceWarning",
                            "ignore::pytest.PytestUnraisableExceptionWarning")
def test_disks_are_made_refused_and_uploaded_from_the_disks_page(
        page: Page, web_demo: Demo, tmp_path: Path) -> None:
    conn = web_demo.connect()
    system = conn.system_service()
    tag = secrets.token_hex(2)
    made, uploaded = f"web-disk-{tag}", f"web-upload-{tag}"
    cancelled, refused_upload = f"web-cancel-{tag}", f"web-qcow2-{tag}"
    image = tmp_path / "image.raw"
    # 6 MiB of known data (two chunks): a pattern, random bytes, and a hole of zeros.
    data = b"overt-portal-upload " * (MIB // 20) + secrets.token_bytes(3 * MIB)
    image.write_bytes(data + bytes(6 * MIB - len(data)))
    try:
        sign_in(page, web_demo)
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Disks").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Disks")

        # New disk: 1 GiB, qcow2, on the demo's domain.
        page.get_by_role("link", name="New disk").click()
        form = page.get_by_role("form", name="New disk")
        form.get_by_label("Name").fill(made)
        form.get_by_label("Size (GiB)").fill("1")
        form.get_by_label("Format").select_option("cow")
        form.get_by_role("button", name="Add disk").click()
        expect(page.get_by_role("status")).to_contain_text(f"Creating disk {made}")
        row = _row(page, made)
        expect(row.locator("td[data-column='size']")).to_have_text("1.0 GiB")
        expect(row.get_by_test_id("disk-status")).to_have_text("ok", timeout=90_000)
        expect(row).to_contain_text("local")
        assert _disk_ok(system, made).provisioned_size == 1 << 30

        # A size the service refuses: its reason on the form, nothing made.
        page.get_by_role("link", name="New disk").click()
        form = page.get_by_role("form", name="New disk")
        form.get_by_label("Name").fill(f"refused-{tag}")
        form.get_by_label("Size (GiB)").fill("100000")
        form.get_by_role("button", name="Add disk").click()
        expect(page.get_by_role("alert")).to_contain_text(
            "must be between 1 MiB and 64 TiB")
        expect(page.get_by_label("Name")).to_have_value(f"refused-{tag}")
        assert system.disks_service().list(search=f"name=refused-{tag}") == []

        # Upload: a raw image through the engine's imageio proxy; the bar reaches 100 %.
        page.goto("/disks")
        page.get_by_role("link", name="Upload", exact=True).click()
        upload = page.get_by_role("form", name="Upload a disk image")
        expect(page.locator("#upload-raw-only")).to_contain_text("Convert a qcow2 image first")
        upload.get_by_label("Image file").set_input_files(str(image))
        upload.get_by_label("Disk name").fill(uploaded)
        upload.get_by_label("Disk format").select_option("cow")
        upload.get_by_role("button", name="Upload", exact=True).click()
        percent = page.get_by_test_id("upload-percent")
        expect(percent).to_have_text(f"100 % (6.0 MiB of 6.0 MiB), done: disk {uploaded} is "
                                     "ready", timeout=120_000)
        bar = page.get_by_role("progressbar", name="Upload progress")
        expect(bar).to_have_attribute("value", "100")
        page.screenshot(path=str(SCREENSHOTS / "disk-upload.png"), full_page=True)

        page.get_by_role("link", name="See it in the disks list").click()
        expect(page.get_by_role("status")).to_contain_text(f"Uploading disk {uploaded}")
        row = _row(page, uploaded)
        expect(row.locator("td[data-column='size']")).to_have_text("6.0 MiB")
        expect(row.get_by_test_id("disk-status")).to_have_text("ok")
        expect(row.locator("td").nth(3)).to_have_text("cow")
        page.screenshot(path=str(SCREENSHOTS / "disks.png"), full_page=True)

        disk = _disk_ok(system, uploaded)
        assert disk.provisioned_size == 6 * MIB and disk.format == types.DiskFormat.COW
        back = tmp_path / "back.raw"
        _download(web_demo, system, disk.id, back)
        assert hashlib.sha256(back.read_bytes()).hexdigest() == \
            hashlib.sha256(image.read_bytes()).hexdigest()

        # A qcow2 file is refused before anything is made, saying how to convert it.
        qcow2 = tmp_path / "image.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow2), "8M"],
                       check=True)
        page.goto("/disks/upload")
        upload = page.get_by_role("form", name="Upload a disk image")
        upload.get_by_label("Image file").set_input_files(str(qcow2))
        upload.get_by_label("Disk name").fill(refused_upload)
        upload.get_by_role("button", name="Upload", exact=True).click()
        expect(page.get_by_test_id("upload-error")).to_have_text(
            "image.qcow2 is a qcow2 image: the portal uploads raw images only. Convert it "
            "first: qemu-img convert -O raw image.qcow2 IMAGE.raw")
        assert system.disks_service().list(search=f"name={refused_upload}") == []

        # Cancel while the data moves (the second chunk held on its way): the transfer is
        # cancelled and its disk removed, as the API's cancel does.
        def first_chunk_only(route: Route) -> None:
            if route.request.headers.get("content-range", "").startswith("bytes 0-"):
                route.continue_()
        page.route("**/disks/transfers/*/data", first_chunk_only)
        upload.get_by_label("Image file").set_input_files(str(image))
        upload.get_by_label("Disk name").fill(cancelled)
        upload.get_by_role("button", name="Upload", exact=True).click()
        expect(page.get_by_test_id("upload-percent")).to_have_text("66 % (4.0 MiB of 6.0 MiB)")
        assert [d.status for d in system.disks_service().list(search=f"name={cancelled}")] \
            == [types.DiskStatus.LOCKED]
        page.get_by_role("button", name="Cancel upload").click()
        expect(page.get_by_role("status")).to_contain_text(f"Removing disk {cancelled}")
        wait_until(lambda: not system.disks_service().list(search=f"name={cancelled}"), 60,
                   "the cancelled upload's disk to be removed")
        page.unroute("**/disks/transfers/*/data")
        page.goto("/disks")

        # Remove, after the page asked: the row goes.
        row.get_by_role("button", name=f"Remove disk {uploaded}").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(f"Remove disk {uploaded}?")
        page.get_by_role("button", name="Remove", exact=True).click()
        expect(page.get_by_role("status")).to_contain_text(f"Removing disk {uploaded}")
        wait_until(lambda: not system.disks_service().list(search=f"name={uploaded}"), 60,
                   "the disk to be removed")
        page.reload()
        expect(_row(page, uploaded)).to_have_count(0)
    finally:
        for name in (made, uploaded, cancelled):
            for disk in system.disks_service().list(search=f"name={name}"):
                with contextlib.suppress(sdk.Error):
                    system.disks_service().disk_service(disk.id).remove()
        conn.close()
