"""NICs, snapshots and the cdrom of a running VM through the official SDK against `overt
demo` and real QEMU: hot-plug (the guest takes an address on the new NIC by DHCP and is
reached through it), link down, unplug (the address unreachable) and removal, seen in the
live domain XML and in the API; a disk-only snapshot taken and merged live (and on a down
VM), the chain on storage equal to the engine's; an ISO inserted into and ejected from the
running guest's cdrom (live XML and QEMU's block layer), and a VM with no disk booting from
an ISO."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import libvirt
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from overt.engine.queries.vm_spec import CONSOLE_LOG_DIR
from overt.lab.guest import BOOT_MARKER
from tests.support.boot_iso import ISOLINUX_BANNER, build_boot_iso
from tests.support.demo import Demo, wait_until

pytestmark = [pytest.mark.vm, pytest.mark.slow]
MIB = 2**20


def live_interface(vm_id: str, mac: str) -> ET.Element | None:
    """The running domain's <interface> with this MAC, from libvirt's live XML."""
    xml = libvirt.open("qemu:///system").lookupByUUIDString(vm_id).XMLDesc()
    for interface in ET.fromstring(xml).findall("devices/interface"):
        found = interface.find("mac")
        if found is not None and found.get("address", "").lower() == mac.lower():
            return interface
    return None


def guest_address(vm_id: str) -> str:
    """The address the guest took by DHCP, as its serial console says (it has no other
    NIC, so the first one it reports)."""
    serial = Path(CONSOLE_LOG_DIR) / f"{vm_id}.log"

    def reported() -> str | None:
        found = re.search(r"overt-test-guest: eth\d+ has address (\S+)",
                          serial.read_text(errors="replace"))
        return found.group(1) if found else None
    return wait_until(reported, 60, "the guest's address on the hot-plugged NIC")


def reaches(address: str) -> bool:
    """Whether the guest answers a ping at `address` through the demo's bridge."""
    return subprocess.run(["ping", "-c", "3", "-i", "0.2", "-W", "1", "-I", "ovirtmgmt", address],
                          capture_output=True).returncode == 0


def neighbour_mac(address: str) -> str:
    shown = subprocess.run(["ip", "neigh", "show", address, "dev", "ovirtmgmt"],
                           capture_output=True, text=True, check=True).stdout.split()
    return shown[shown.index("lladdr") + 1].lower() if "lladdr" in shown else ""


@pytest.fixture(scope="module")
def running_vm(demo: Demo) -> Iterator[tuple[sdk.Connection, types.Vm]]:
    """A booted test guest (booted, so it answers the PCI unplug request)."""
    conn = demo.connect()
    vms = conn.system_service().vms_service()
    vm = vms.add(types.Vm(name="e2e-nics", cluster=types.Cluster(name="Default"),
                          template=types.Template(name="test-guest"), memory=256 * MIB))
    service = vms.vm_service(vm.id)
    try:
        disk = conn.follow_link(service.disk_attachments_service().list()[0].disk)
        wait_until(lambda: conn.system_service().disks_service().disk_service(disk.id).get()
                   .status == types.DiskStatus.OK, 60, "the VM's disk to be created")
        service.start()
        wait_until(lambda: service.get().status == types.VmStatus.UP, 90, "the VM to be up")
        serial = Path(CONSOLE_LOG_DIR) / f"{vm.id}.log"
        wait_until(lambda: serial.exists() and BOOT_MARKER in serial.read_text(), 60,
                   "the guest's boot marker")
        yield conn, vm
    finally:
        demo.destroy_leftover_domains([vm.id])
        with contextlib.suppress(sdk.Error):
            wait_until(lambda: service.get().status == types.VmStatus.DOWN, 60, "the VM down")
            service.remove()
        conn.close()


def test_a_nic_is_hot_plugged_relinked_unplugged_and_removed(
        running_vm: tuple[sdk.Connection, types.Vm]) -> None:
    conn, vm = running_vm
    nics = conn.system_service().vms_service().vm_service(vm.id).nics_service()
    profile = next(p for p in conn.system_service().vnic_profiles_service().list()
                   if p.name == "ovirtmgmt")

    nic = nics.add(types.Nic(name="hot1", vnic_profile=types.VnicProfile(id=profile.id)))
    assert nic.plugged and nic.linked
    assert nic.mac.address.startswith("56:6f:")  # from the Default MAC pool
    interface = live_interface(vm.id, nic.mac.address)
    assert interface is not None, "the hot-plugged NIC is not in the live domain"
    assert interface.find("source").get("bridge") == "ovirtmgmt"  # type: ignore[union-attr]
    assert [n.name for n in nics.list()] == ["hot1"]
    # The guest takes an address on it by DHCP, and this machine reaches that address
    # through the NIC's own MAC.
    address = guest_address(vm.id)
    assert reaches(address)
    assert neighbour_mac(address) == nic.mac.address.lower()

    changed = nics.nic_service(nic.id).update(types.Nic(linked=False))
    assert changed.linked is False and changed.plugged is True
    link = live_interface(vm.id, nic.mac.address).find("link")  # type: ignore[union-attr]
    assert link is not None and link.get("state") == "down"
    nics.nic_service(nic.id).update(types.Nic(linked=True))
    link = live_interface(vm.id, nic.mac.address).find("link")  # type: ignore[union-attr]
    assert link is None or link.get("state") == "up"

    with pytest.raises(sdk.Error) as refused:
        nics.nic_service(nic.id).remove()
    assert refused.value.code == 409 and "unplug it first" in str(refused.value)
    assert live_interface(vm.id, nic.mac.address) is not None
    assert [n.name for n in nics.list()] == ["hot1"]

    unplugged = nics.nic_service(nic.id).update(types.Nic(plugged=False))
    assert unplugged.plugged is False
    assert live_interface(vm.id, nic.mac.address) is None
    assert not reaches(address)  # the guest's only NIC is gone
    nics.nic_service(nic.id).remove()
    assert nics.list() == []


def test_a_nic_on_a_network_outside_the_vms_cluster_is_refused(
        running_vm: tuple[sdk.Connection, types.Vm]) -> None:
    conn, vm = running_vm
    system = conn.system_service()
    network = system.networks_service().add(types.Network(
        name="e2e-away", data_center=types.DataCenter(name="Default"), vlan=types.Vlan(id=321)))
    nics = system.vms_service().vm_service(vm.id).nics_service()
    try:
        profile = next(p for p in system.vnic_profiles_service().list()
                       if p.network.id == network.id)
        before = libvirt.open("qemu:///system").lookupByUUIDString(vm.id).XMLDesc()
        with pytest.raises(sdk.Error) as refused:
            nics.add(types.Nic(name="away", vnic_profile=types.VnicProfile(id=profile.id)))
        assert refused.value.code == 400
        assert "not attached to cluster Default" in str(refused.value)
        assert nics.list() == []
        after = libvirt.open("qemu:///system").lookupByUUIDString(vm.id).XMLDesc()
        assert len(ET.fromstring(after).findall("devices/interface")) == \
            len(ET.fromstring(before).findall("devices/interface"))
    finally:
        system.networks_service().network_service(network.id).remove()


# -- snapshots of the same guest (it is booted already: no second VM to boot) ---------------

def live_disk_source(vm_id: str) -> str:
    """The volume QEMU writes for the VM's first disk, from libvirt's live XML."""
    xml = libvirt.open("qemu:///system").lookupByUUIDString(vm_id).XMLDesc()
    source = ET.fromstring(xml).find("devices/disk/source")
    assert source is not None
    return source.get("file", "")


def storage_chain(path: str) -> list[str]:
    """The volume ids qemu-img finds on storage under `path`, base first."""
    out = subprocess.run(["qemu-img", "info", "-U", "--backing-chain", "--output=json", path],
                         check=True, capture_output=True, text=True).stdout
    return [Path(layer["filename"]).name.split(".")[0] for layer in reversed(json.loads(out))]


def api_chain(conn: sdk.Connection, vm_id: str, template_disk_id: str) -> list[str]:
    """The chain the engine records, as its API shows it: the template's volume, each
    snapshot's volume oldest first, then the active one (`Active VM`, listed first)."""
    snapshots = conn.system_service().vms_service().vm_service(vm_id).snapshots_service()
    listed = snapshots.list()
    volumes = [template_disk_id]
    for snapshot in [*listed[1:], listed[0]]:
        disks = snapshots.snapshot_service(snapshot.id).disks_service().list()
        volumes += [d.image_id for d in disks]
    return volumes


def template_disk_id(conn: sdk.Connection) -> str:
    templates = conn.system_service().templates_service()
    template = templates.list(search="name=test-guest")[0]
    attachment = templates.template_service(template.id).disk_attachments_service().list()[0]
    return str(attachment.id)


def snapshot_then_remove(conn: sdk.Connection, vm_id: str, active: Callable[[], str]) -> None:
    """Take a snapshot, check the chains, remove it, check them again: the guest (if any)
    keeps running on a clean image."""
    snapshots = conn.system_service().vms_service().vm_service(vm_id).snapshots_service()
    base_volume, template = active(), template_disk_id(conn)
    assert [(s.description, s.snapshot_type) for s in snapshots.list()] == [
        ("Active VM", types.SnapshotType.ACTIVE)]

    taken = snapshots.add(types.Snapshot(description="e2e", persist_memorystate=False))
    assert taken.description == "e2e"
    wait_until(lambda: snapshots.snapshot_service(taken.id).get().snapshot_status
               == types.SnapshotStatus.OK, 60, "the snapshot to be taken")
    overlay = active()
    assert overlay != base_volume
    assert storage_chain(overlay) == api_chain(conn, vm_id, template)
    assert len(storage_chain(overlay)) == 3
    assert [s.snapshot_type for s in snapshots.list()] == [
        types.SnapshotType.ACTIVE, types.SnapshotType.REGULAR]

    snapshots.snapshot_service(taken.id).remove()
    wait_until(lambda: len(snapshots.list()) == 1, 120, "the snapshot to be merged away")
    assert active() == base_volume
    assert storage_chain(base_volume) == api_chain(conn, vm_id, template)
    assert len(storage_chain(base_volume)) == 2
    assert not Path(overlay).exists()
    subprocess.run(["qemu-img", "check", "-U", base_volume], check=True, capture_output=True)


def test_a_snapshot_of_the_running_guest_is_taken_and_merged_live(
        running_vm: tuple[sdk.Connection, types.Vm]) -> None:
    conn, vm = running_vm
    serial = Path(CONSOLE_LOG_DIR) / f"{vm.id}.log"
    snapshot_then_remove(conn, vm.id, lambda: live_disk_source(vm.id))
    service = conn.system_service().vms_service().vm_service(vm.id)
    assert service.get().status == types.VmStatus.UP
    assert BOOT_MARKER in serial.read_text()

    snapshots = service.snapshots_service()
    for refused, code in ((lambda: snapshots.snapshot_service(str(uuid.uuid4())).remove(), 404),
                          (lambda: snapshots.snapshot_service(snapshots.list()[0].id).remove(),
                           409)):
        with pytest.raises(sdk.Error) as error:
            refused()
        assert error.value.code == code
    assert len(snapshots.list()) == 1


def test_a_down_vms_snapshot_is_merged_previewed_and_restored(
        demo: Demo, running_vm: tuple[sdk.Connection, types.Vm]) -> None:
    conn, _running = running_vm
    vms = conn.system_service().vms_service()
    vm = vms.add(types.Vm(name="e2e-snap-down", cluster=types.Cluster(name="Default"),
                          template=types.Template(name="test-guest"), memory=256 * MIB))
    service = vms.vm_service(vm.id)
    try:
        disk = conn.follow_link(service.disk_attachments_service().list()[0].disk)
        disks = conn.system_service().disks_service()
        wait_until(lambda: disks.disk_service(disk.id).get().status == types.DiskStatus.OK, 60,
                   "the VM's disk to be created")

        def active() -> str:
            image_id = disks.disk_service(disk.id).get().image_id
            return str(next(demo.images_dir.rglob(f"{image_id}.qcow2")))
        snapshot_then_remove(conn, vm.id, active)
        assert service.get().status == types.VmStatus.DOWN

        # Preview, undo, preview again and commit, then restore: oVirt's actions.
        snapshots = service.snapshots_service()
        taken = snapshots.add(types.Snapshot(description="kept", persist_memorystate=False))
        status = lambda: snapshots.snapshot_service(taken.id).get().snapshot_status  # noqa: E731
        wait_until(lambda: status() == types.SnapshotStatus.OK, 60, "the snapshot")
        frozen = active()
        service.preview_snapshot(snapshot=types.Snapshot(id=taken.id))
        wait_until(lambda: status() == types.SnapshotStatus.IN_PREVIEW, 60, "the preview")
        assert [s.snapshot_type for s in snapshots.list()][-1] == types.SnapshotType.PREVIEW
        service.undo_snapshot()
        wait_until(lambda: len(snapshots.list()) == 2, 60, "the preview to be undone")
        assert active() == frozen
        service.preview_snapshot(snapshot=types.Snapshot(id=taken.id))
        wait_until(lambda: status() == types.SnapshotStatus.IN_PREVIEW, 60, "the preview")
        service.commit_snapshot()
        wait_until(lambda: len(snapshots.list()) == 2 and status() == types.SnapshotStatus.OK,
                   60, "the preview to be committed")
        snapshots.snapshot_service(taken.id).restore()
        wait_until(lambda: active() != frozen and status() == types.SnapshotStatus.OK, 60,
                   "the restore")
        assert storage_chain(active()) == api_chain(conn, vm.id, template_disk_id(conn))
    finally:
        with contextlib.suppress(sdk.Error):
            service.remove()


# -- the cdrom ------------------------------------------------------------------------------

EMPTY_CDROM = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def boot_iso(demo: Demo, running_vm: tuple[sdk.Connection, types.Vm]) -> Iterator[types.Disk]:
    """A bootable ISO (isolinux) added to the demo's local domain by `overt iso add`."""
    conn, _vm = running_vm
    image = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-iso-")) / "e2e-boot.iso"
    build_boot_iso(image)
    disks = conn.system_service().disks_service()
    disk_id = None
    try:
        env = {**os.environ, "OVERT_URL": demo.url, "OVERT_PASSWORD": demo.password,
               "OVERT_CA_FILE": str(demo.ca_file)}
        added = subprocess.run([sys.executable, "-m", "overt", "iso", "add", str(image),
                                "--domain", "local", "--json"], capture_output=True, text=True,
                               env=env, timeout=300, check=False)
        assert added.returncode == 0, added.stderr
        disk_id = json.loads(added.stdout)["id"]
        disk = disks.disk_service(disk_id).get()
        assert (disk.content_type, disk.status) == (types.DiskContentType.ISO,
                                                     types.DiskStatus.OK)
        yield disk
    finally:
        shutil.rmtree(image.parent, ignore_errors=True)
        if disk_id is not None:
            with contextlib.suppress(sdk.Error):
                disks.disk_service(disk_id).remove()


def live_cdrom(vm_id: str) -> ET.Element:
    xml = libvirt.open("qemu:///system").lookupByUUIDString(vm_id).XMLDesc()
    [drive] = [d for d in ET.fromstring(xml).findall("devices/disk[@device='cdrom']")
               if d.find("alias[@name='ua-cdrom']") is not None]
    return drive


def live_media(vm_id: str) -> str | None:
    """The image file in the cdrom by the live XML (an ejected drive keeps a bare <source>)."""
    source = live_cdrom(vm_id).find("source")
    return source.get("file") if source is not None else None


def qemu_cdrom_file(vm_id: str) -> str | None:
    """The image QEMU's block layer has in the VM's cdrom (QMP query-block), None: empty."""
    dom = libvirt.open("qemu:///system").lookupByUUIDString(vm_id)
    out = subprocess.run(["virsh", "-c", "qemu:///system", "qemu-monitor-command", dom.name(),
                          '{"execute": "query-block"}'], check=True, capture_output=True,
                         text=True).stdout
    for device in json.loads(out)["return"]:
        if device.get("qdev", "").endswith("ide0-1-1") or "ua-cdrom" in device.get("qdev", ""):
            inserted = device.get("inserted")
            return inserted["file"] if inserted else None
    raise AssertionError(f"QEMU has no cdrom drive of VM {dom.name()}: {out}")


# The media change is a command over the engine's transport (direct and AMQP); the database
# adds nothing here (the API tests run on PostgreSQL too).
@pytest.mark.parametrize("demo", ["sqlite", pytest.param("sqlite+amqp", marks=pytest.mark.amqp)],
                         indirect=True)
def test_an_iso_is_inserted_into_and_ejected_from_the_running_guest(
        running_vm: tuple[sdk.Connection, types.Vm], boot_iso: types.Disk) -> None:
    conn, vm = running_vm
    system = conn.system_service()
    files = system.storage_domains_service().storage_domain_service(
        boot_iso.storage_domains[0].id).files_service().list()
    assert boot_iso.id in [f.id for f in files]
    cdrom = system.vms_service().vm_service(vm.id).cdroms_service().cdrom_service(EMPTY_CDROM)
    assert cdrom.get(current=True).file is None
    assert live_media(vm.id) is None and qemu_cdrom_file(vm.id) is None

    inserted = cdrom.update(types.Cdrom(file=types.File(id=boot_iso.id)), current=True)
    assert inserted.file.id == boot_iso.id
    media = live_media(vm.id)
    assert media is not None and media.endswith(f"images/{boot_iso.id}.raw")
    assert qemu_cdrom_file(vm.id) == media
    assert cdrom.get(current=True).file.id == boot_iso.id
    assert cdrom.get().file is None  # the next run's media did not change
    events = [e.description for e in system.events_service().list(max=20)]
    assert f"CD e2e-boot.iso was inserted into VM {vm.name}" in events

    ejected = cdrom.update(types.Cdrom(file=types.File(id="")), current=True)
    assert ejected.file is None
    assert live_media(vm.id) is None and qemu_cdrom_file(vm.id) is None


# One boot of a second VM is enough: booting from a cdrom does not depend on the engine's
# database or transport.
@pytest.mark.parametrize("demo", ["sqlite"], indirect=True)
def test_a_vm_with_no_disk_boots_from_an_iso_when_asked(
        demo: Demo, running_vm: tuple[sdk.Connection, types.Vm], boot_iso: types.Disk) -> None:
    conn, _running = running_vm
    vms = conn.system_service().vms_service()
    vm = vms.add(types.Vm(name="e2e-installer", cluster=types.Cluster(name="Default"),
                          template=types.Template(name="Blank"), memory=256 * MIB,
                          os=types.OperatingSystem(type="debian_12x64")))
    service = vms.vm_service(vm.id)
    try:
        service.start(vm=types.Vm(
            os=types.OperatingSystem(boot=types.Boot(devices=[types.BootDevice.CDROM])),
            cdroms=[types.Cdrom(file=types.File(id=boot_iso.id))]))
        wait_until(lambda: service.get().status == types.VmStatus.UP, 90, "the VM to be up")
        drive = live_cdrom(vm.id)
        assert drive.find("boot").get("order") == "1"  # type: ignore[union-attr]
        # The VM has no disk and no NIC: only the ISO's boot loader can talk.
        serial = Path(CONSOLE_LOG_DIR) / f"{vm.id}.log"
        wait_until(lambda: serial.exists() and ISOLINUX_BANNER in serial.read_text(), 60,
                   "isolinux's banner on the serial console")
        assert service.cdroms_service().cdrom_service(EMPTY_CDROM).get(
            current=True).file.id == boot_iso.id
        assert service.cdroms_service().cdrom_service(EMPTY_CDROM).get().file is None
    finally:
        demo.destroy_leftover_domains([vm.id])
        with contextlib.suppress(sdk.Error):
            wait_until(lambda: service.get().status == types.VmStatus.DOWN, 60, "the VM down")
            service.remove()
