"""One `overt demo` for the oVirt tools users bring (Ansible's oVirt collection, libgovirt,
the SDK's console calls), and a running VM on it."""

from __future__ import annotations

from collections.abc import Iterator

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from tests.e2e.demo.conftest import running_demo
from tests.support.demo import Demo, wait_until

MIB = 2**20


@pytest.fixture(scope="package")
def demo() -> Iterator[Demo]:
    with running_demo() as started:
        yield started


@pytest.fixture(scope="package")
def running_vm(demo: Demo) -> Iterator[types.Vm]:
    """A started VM of the test guest, with a NIC."""
    conn = demo.connect()
    vms = conn.system_service().vms_service()
    vm = vms.add(types.Vm(name="console-vm", cluster=types.Cluster(name="Default"),
                          template=types.Template(name="test-guest"), memory=256 * MIB))
    service = vms.vm_service(vm.id)
    try:
        wait_until(lambda: conn.follow_link(
            service.disk_attachments_service().list()[0].disk).status == types.DiskStatus.OK,
            60, "the VM's disk to be created")
        profile = next(p for p in conn.system_service().vnic_profiles_service().list()
                       if p.name == "ovirtmgmt")
        service.nics_service().add(types.Nic(name="nic1",
                                             vnic_profile=types.VnicProfile(id=profile.id)))
        service.start()
        wait_until(lambda: service.get().status == types.VmStatus.UP, 90, "the VM to be up")
        yield service.get()
    finally:
        try:
            service.stop()
            wait_until(lambda: service.get().status == types.VmStatus.DOWN, 60, "the VM to stop")
            service.remove()
            wait_until(lambda: not vms.list(search="name=console-vm"), 60, "the VM to go")
        except sdk.Error:
            demo.destroy_leftover_domains([vm.id])
        conn.close()
