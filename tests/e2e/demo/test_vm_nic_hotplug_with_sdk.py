"""NICs of a running VM through the official SDK against `overt demo` and real QEMU:
hot-plug, link down, unplug and removal, seen in the live domain XML and in the API."""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import libvirt
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from overt.engine.queries.vm_spec import CONSOLE_LOG_DIR
from overt.lab.guest import BOOT_MARKER
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
