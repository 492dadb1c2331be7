"""kill -9 of the engine in the middle of a VM start: nothing is lost, nothing stays stuck."""

from __future__ import annotations

import time
from collections.abc import Iterator

import libvirt
import ovirtsdk4.types as types
import pytest

from tests.e2e.demo.conftest import running_demo
from tests.support.demo import Demo, wait_until

pytestmark = [pytest.mark.vm, pytest.mark.slow]
MIB = 2**20


@pytest.fixture(params=["direct", pytest.param("amqp", marks=pytest.mark.amqp)])
def crash_demo(request: pytest.FixtureRequest) -> Iterator[Demo]:
    bus = request.getfixturevalue("rabbitmq").admin_url if request.param == "amqp" \
        else "direct"
    with running_demo(bus=bus) as demo:
        yield demo


def _domain_state(vm_id: str) -> str:
    conn = libvirt.open("qemu:///system")
    try:
        state, _ = conn.lookupByUUIDString(vm_id).state()
    except libvirt.libvirtError:
        return "absent"
    finally:
        conn.close()
    return "running" if state == libvirt.VIR_DOMAIN_RUNNING else f"state {state}"


def test_a_vm_start_survives_a_killed_engine(crash_demo: Demo) -> None:
    conn = crash_demo.connect()
    vms = conn.system_service().vms_service()
    vm = vms.add(types.Vm(name="crash-1", cluster=types.Cluster(name="Default"),
                          template=types.Template(name="test-guest"), memory=256 * MIB))
    try:
        disk_service = conn.system_service().disks_service()
        wait_until(lambda: all(disk_service.disk_service(a.disk.id).get().status ==
                               types.DiskStatus.OK
                               for a in vms.vm_service(vm.id).disk_attachments_service().list()),
                   60, "the VM's disk")
        vms.vm_service(vm.id).start()
        jobs = conn.system_service().jobs_service()
        job = next(j for j in jobs.list() if j.description == "Launching VM crash-1")
        # Kill the engine once the job is running its steps: mid-job.
        wait_until(lambda: jobs.job_service(job.id).steps_service().list(), 30,
                   "the start job to begin")
        crash_demo.kill_engine()
        conn.close(logout=False)
        time.sleep(1)
        crash_demo.start()
        conn = crash_demo.connect()
        jobs = conn.system_service().jobs_service()
        vms = conn.system_service().vms_service()
        final = wait_until(lambda: (j := jobs.job_service(job.id).get()).status !=
                           types.JobStatus.STARTED and j, 120, "the start job to end")
        assert final.status in (types.JobStatus.FINISHED, types.JobStatus.FAILED)

        def matches() -> bool:
            status = vms.vm_service(vm.id).get().status
            return (status == types.VmStatus.UP) == (_domain_state(vm.id) == "running") and \
                status in (types.VmStatus.UP, types.VmStatus.DOWN)
        wait_until(matches, 60, "the VM's status to match the hypervisor")
        assert final.status == types.JobStatus.FINISHED
        assert vms.vm_service(vm.id).get().status == types.VmStatus.UP
        assert _domain_state(vm.id) == "running"
    finally:
        crash_demo.destroy_leftover_domains([vm.id])
        conn.close()
