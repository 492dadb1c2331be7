"""The VM page's Hardware section in Chromium: VMs made through the official SDK with
different boot orders, bios types and CPU topologies show them in words (machine, firmware,
boot order, CD-ROM, operating system, CPUs), inside their card at 1280 px and on a phone,
and a change through the API shows on the page."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from overt.engine.db.tables import Cluster, Disk, StorageDomain
from overt.engine.model.status import DiskStatus, StorageDomainStatus
from tests.e2e.web.conftest import SCREENSHOTS, admin_page
from tests.support.engine import RunningEngine, start_engine
from tests.support.no_nodes import NoNodes

pytestmark = [pytest.mark.browser, pytest.mark.slow]
MIB = 2**20
Boot = types.BootDevice

# name: (bios type, boot devices, sockets/cores/threads, os type) -> what the section says
VMS = {
    "hw-legacy": ((types.BiosType.I440FX_SEA_BIOS, [Boot.HD], (1, 1, 1), "other"), {
        "machine": "i440FX", "firmware": "BIOS (SeaBIOS) · bios.type i440fx_sea_bios",
        "boot": "1. Hard disk", "cdrom": "empty", "os": "other",
        "cpus": "1 (1 socket × 1 core × 1 thread)"}),
    "hw-uefi-pxe": ((types.BiosType.Q35_OVMF, [Boot.NETWORK, Boot.HD], (2, 2, 1),
                     "other_linux"), {
        "machine": "Q35", "firmware": "UEFI (OVMF) · bios.type q35_ovmf",
        "boot": "1. Network (PXE), 2. Hard disk", "cdrom": "empty", "os": "other_linux",
        "cpus": "4 (2 sockets × 2 cores × 1 thread)"}),
    "hw-secure-installer": ((types.BiosType.Q35_SECURE_BOOT,
                             [Boot.CDROM, Boot.HD, Boot.NETWORK], (1, 4, 2), "other_linux"), {
        "machine": "Q35",
        "firmware": "UEFI with Secure Boot (OVMF) · bios.type q35_secure_boot",
        "boot": "1. CD-ROM, 2. Hard disk, 3. Network (PXE)", "cdrom": "empty",
        "os": "other_linux", "cpus": "8 (1 socket × 4 cores × 2 threads)"}),
}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    running = start_engine(tmp_path_factory.mktemp("engine"), transport=NoNodes())
    yield running
    running.stop()


@pytest.fixture(scope="module")
def vm_ids(engine: RunningEngine) -> Iterator[dict[str, str]]:
    conn = sdk.Connection(url=engine.url, username="admin@internal", password=engine.password,
                          ca_file=str(engine.ca_file))
    vms = conn.system_service().vms_service()
    made = {}
    for name, ((bios, boot, (sockets, cores, threads), os_type), _) in VMS.items():
        made[name] = vms.add(types.Vm(
            name=name, cluster=types.Cluster(name="Default"),
            template=types.Template(name="Blank"), memory=512 * MIB,
            bios=types.Bios(type=bios),
            cpu=types.Cpu(topology=types.CpuTopology(sockets=sockets, cores=cores,
                                                     threads=threads)),
            os=types.OperatingSystem(type=os_type, boot=types.Boot(devices=boot)))).id
    yield made
    conn.close()


@pytest.fixture
def admin(browser: Browser, engine: RunningEngine) -> Iterator[Page]:
    with admin_page(browser, engine, height=900) as page:
        yield page


# Measured in one go in the page (the summary it is part of is fetched again on changes,
# and a swap between two measurements would leave nothing to measure).
MEASURE = """() => {
  const card = document.getElementById("vm-hardware-h").closest("section");
  const box = card.getBoundingClientRect();
  const over = [card, ...card.querySelectorAll("*")].filter(e =>
      e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== "visible"
      || e.getBoundingClientRect().right > box.right + 1
      || e.getBoundingClientRect().left < box.left - 1)
    .map(e => e.tagName + ": " + e.textContent.trim());
  return {left: box.left, right: box.right, height: box.height, over: over,
          window: window.innerWidth, page: document.documentElement.scrollWidth};
}"""


def _section_fits(page: Page) -> None:
    """The Hardware card is on screen inside the window, and nothing in it overflows it."""
    expect(page.get_by_role("heading", name="Hardware")).to_be_visible()
    # After a change of the window's size the graphs follow at its resize event: wait for it.
    deadline = time.monotonic() + 15
    seen = page.evaluate(MEASURE)
    while seen["page"] > seen["window"] + 1 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
        seen = page.evaluate(MEASURE)
    assert seen["left"] >= 0 and seen["right"] <= seen["window"] and seen["height"] > 100, seen
    assert seen["over"] == [], seen
    assert seen["page"] <= seen["window"] + 1, seen


@pytest.mark.parametrize("name", list(VMS))
def test_the_hardware_section_says_what_the_vm_has(admin: Page, vm_ids: dict[str, str],
                                                   name: str) -> None:
    page = admin
    page.goto(f"/vms/{vm_ids[name]}")
    expect(page.get_by_role("heading", name=f"VM {name}")).to_be_visible()
    hardware = page.get_by_test_id("vm-hardware")
    labels = hardware.locator("dt")
    expect(labels).to_have_text(["Machine", "Firmware", "Boot order", "CD-ROM",
                                 "Operating system", "CPUs"])
    for key, text in VMS[name][1].items():
        expect(page.get_by_test_id(f"vm-hw-{key}")).to_have_text(text)
    _section_fits(page)
    if name == "hw-secure-installer":
        page.screenshot(path=str(SCREENSHOTS / "vm-hardware.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 900})  # a phone
    expect(page.get_by_test_id("vm-hw-firmware")).to_have_text(VMS[name][1]["firmware"])
    _section_fits(page)


def test_a_change_through_the_api_shows_on_the_page(
        admin: Page, vm_ids: dict[str, str], engine: RunningEngine) -> None:
    page = admin
    vm_id = vm_ids["hw-legacy"]
    page.goto(f"/vms/{vm_id}")
    expect(page.get_by_test_id("vm-hw-boot")).to_have_text("1. Hard disk")
    conn = sdk.Connection(url=engine.url, username="admin@internal", password=engine.password,
                          ca_file=str(engine.ca_file))
    try:
        conn.system_service().vms_service().vm_service(vm_id).update(types.Vm(
            bios=types.Bios(type=types.BiosType.Q35_SEA_BIOS),
            os=types.OperatingSystem(boot=types.Boot(devices=[Boot.CDROM, Boot.NETWORK]))))
    finally:
        conn.close()
    # The page follows the change feed: no reload.
    expect(page.get_by_test_id("vm-hw-machine")).to_have_text("Q35")
    expect(page.get_by_test_id("vm-hw-firmware")).to_have_text(
        "BIOS (SeaBIOS) · bios.type q35_sea_bios")
    expect(page.get_by_test_id("vm-hw-boot")).to_have_text("1. CD-ROM, 2. Network (PXE)")
    _section_fits(page)


def _iso_disk(engine: RunningEngine, name: str) -> str:
    """An ISO disk on a local domain of the Default data center, as its upload leaves it."""
    async def insert() -> str:
        async with engine.runtime.db.transaction() as session:
            cluster = (await session.execute(select(Cluster).where(
                Cluster.name == "Default"))).scalar_one()
            domain = StorageDomain(id=uuid.uuid4(), name=f"{name}-sd", storage_type="localfs",
                                   path=f"/var/tmp/{name}-sd",
                                   data_center_id=cluster.data_center_id,
                                   status=StorageDomainStatus.ACTIVE)
            session.add(domain)
            await session.flush()
            disk = Disk(id=uuid.uuid4(), name=name, storage_domain_id=domain.id,
                        provisioned_size=4 * MIB, format="raw", sparse=False,
                        status=DiskStatus.OK, image_path=f"images/{name}", content_type="iso")
            session.add(disk)
            return str(disk.id)
    return str(asyncio.run_coroutine_threadsafe(insert(), engine.loop).result(timeout=30))


def test_the_new_vm_forms_boot_order_cd_and_cloud_init_reach_the_vm(
        admin: Page, engine: RunningEngine) -> None:
    page = admin
    iso_id = _iso_disk(engine, "hw-installer.iso")
    page.goto("/vms/new")
    page.get_by_label("Name", exact=True).fill("hw-from-form")
    page.get_by_label("No disk").check()
    page.get_by_label("Network interface").select_option("")
    page.get_by_label("1st device").select_option("cdrom")
    page.get_by_label("2nd device").select_option("network")
    page.get_by_label("3rd device").select_option("hd")
    page.get_by_label("CD (ISO image)").select_option(iso_id)
    page.get_by_label("Host name").fill("installer1")
    page.get_by_label("User", exact=True).fill("ops")
    # A malformed key first: the form says why and keeps everything typed.
    page.get_by_label("SSH public key").fill("ssh-ed25519 not-a-key")
    page.get_by_label("Custom script (cloud-config)").fill("runcmd:\n  - echo hi\n")
    page.get_by_role("button", name="Create VM").click()
    expect(page.get_by_role("alert")).to_contain_text("key 1 is not an OpenSSH public key")
    expect(page.get_by_label("Host name")).to_have_value("installer1")
    expect(page.get_by_label("1st device")).to_have_value("cdrom")
    expect(page.get_by_label("CD (ISO image)")).to_have_value(iso_id)
    expect(page.get_by_label("Custom script (cloud-config)")).to_have_value(
        "runcmd:\n  - echo hi\n")
    page.get_by_label("SSH public key").fill("")
    page.get_by_role("button", name="Create VM").click()
    expect(page.get_by_role("heading", name="VM hw-from-form")).to_be_visible()
    expect(page.get_by_test_id("vm-hw-boot")).to_have_text(
        "1. CD-ROM, 2. Network (PXE), 3. Hard disk")
    expect(page.get_by_test_id("vm-hw-cdrom")).to_have_text("hw-installer.iso")
    conn = sdk.Connection(url=engine.url, username="admin@internal", password=engine.password,
                          ca_file=str(engine.ca_file))
    try:
        vm = conn.system_service().vms_service().list(search="name=hw-from-form")[0]
        assert (vm.initialization.host_name, vm.initialization.user_name) == ("installer1",
                                                                              "ops")
        assert vm.initialization.custom_script == "runcmd:\n  - echo hi\n"
    finally:
        conn.close()
