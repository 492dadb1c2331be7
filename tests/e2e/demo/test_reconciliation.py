"""The monitor makes the engine agree with what really runs on the host."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import libvirt
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from overt.lab.guest import build_guest_image
from overt.lab.guest.domain import GuestDomain, overlay_disk
from tests.e2e.demo.conftest import running_demo
from tests.support.demo import Demo, wait_until

pytestmark = [pytest.mark.vm, pytest.mark.slow]
MIB = 2**20


@pytest.fixture(scope="module")
def sqlite_demo() -> Iterator[Demo]:
    # At debug level a failure here shows each event the monitor applied.
    with running_demo(log_level="debug") as demo:
        yield demo


def test_a_domain_started_behind_the_engine_shows_as_external(sqlite_demo: Demo) -> None:
    spec = GuestDomain(disk=sqlite_demo.images_dir / "outside.qcow2",
                       serial_log=sqlite_demo.images_dir / "outside.log", name="made-by-hand")
    overlay_disk(build_guest_image().qcow2_disk, spec.disk)
    conn = sqlite_demo.connect()
    virt = libvirt.open("qemu:///system")
    domain = virt.createXML(spec.xml(), 0)
    try:
        vms = conn.system_service().vms_service()
        external = wait_until(lambda: next(iter(vms.list(search="name=made-by-hand")), None), 60,
                              "the external VM to appear")
        assert external.origin == "external"
        assert external.status == types.VmStatus.UP
        with pytest.raises(sdk.Error, match="external"):
            vms.vm_service(external.id).reboot()
        domain.destroy()
        wait_until(lambda: not vms.list(search="name=made-by-hand"), 60,
                   "the external VM to go away with its domain")
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            domain.destroy()
        virt.close()
        conn.close()


def test_a_vm_that_stopped_behind_the_engine_goes_down_with_an_event(sqlite_demo: Demo) -> None:
    conn = sqlite_demo.connect()
    vms = conn.system_service().vms_service()
    vm = vms.add(types.Vm(name="lost-1", cluster=types.Cluster(name="Default"),
                          template=types.Template(name="Blank"), memory=128 * MIB))
    try:
        vms.vm_service(vm.id).start()
        wait_until(lambda: vms.vm_service(vm.id).get().status == types.VmStatus.UP, 60, "up")
        virt = libvirt.open("qemu:///system")
        virt.lookupByUUIDString(vm.id).destroy()
        virt.close()
        wait_until(lambda: vms.vm_service(vm.id).get().status == types.VmStatus.DOWN, 60,
                   "the engine to see the VM down")
        events = conn.system_service().events_service().list(max=20)
        assert any(e.description.startswith("VM lost-1 is down on host local")
                   and e.vm is not None and e.vm.id == vm.id for e in events)
    finally:
        sqlite_demo.destroy_leftover_domains([vm.id])
        conn.close()
