"""The `vm.cdrom` job and run-once starts over the fast lane: a running VM's cdrom media
is changed and ejected on its host; a failed change puts the record back; a start with a
run-once boot order and ISO gives the node that spec, and the next start the VM's own."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from overt.engine.db.tables import Cluster, Disk, Step, StorageDomain, User, Vm
from overt.engine.model.errors import Conflict
from overt.engine.model.status import DiskStatus, StorageDomainStatus, VmStatus
from overt.engine.services import cdroms, devices, vms
from overt.engine.services.inputs import RunOnce
from overt.node.errors import NodeFailure
from overt.node.simulated.hypervisor import SimulatedHypervisor
from overt.protocol import ErrorCode
from overt.protocol.vm import BootDevice, NfsSource
from tests.support.loopback import LoopbackEngine

MIB = 1 << 20


async def _iso(engine: LoopbackEngine, name: str) -> tuple[uuid.UUID, NfsSource]:
    """An ISO disk, ready, on an NFS domain of the VM's data center; and its source."""
    async with engine.session() as session:
        cluster = await session.get(Cluster, engine.cluster_id)
        assert cluster is not None
        domain = (await session.execute(select(StorageDomain).where(
            StorageDomain.name == "isos"))).scalar_one_or_none()
        if domain is None:
            domain = StorageDomain(id=uuid.uuid4(), name="isos", storage_type="nfs",
                                   path="/export/isos", address="storage.example",
                                   data_center_id=cluster.data_center_id,
                                   status=StorageDomainStatus.ACTIVE)
            session.add(domain)
            await session.flush()
        disk = Disk(id=uuid.uuid4(), name=name, storage_domain_id=domain.id,
                    provisioned_size=MIB, format="raw", sparse=False, status=DiskStatus.OK,
                    image_path=f"images/{name}", content_type="iso")
        session.add(disk)
        return disk.id, NfsSource(server="storage.example", path=f"/export/isos/images/{name}")


async def _change(engine: LoopbackEngine, vm_id: uuid.UUID, file_id: str | None, *,
                  current: bool = True) -> uuid.UUID | None:
    async with engine.session() as session:
        vm = await session.get(Vm, vm_id)
        user = await session.get(User, engine.user_id)
        assert vm is not None
        job = await cdroms.update_cdrom(session, engine.jobs, vm, file_id, user, current=current)
        return job.id if job is not None else None


async def _running_vm(engine: LoopbackEngine) -> tuple[SimulatedHypervisor, uuid.UUID]:
    node = await engine.add_host("h1")
    vm_id = await engine.add_vm("web")
    assert (await engine.job((await engine.act(vms.start_vm, vm_id)).id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    assert isinstance(node.hypervisor, SimulatedHypervisor)
    return node.hypervisor, vm_id


async def test_a_running_vms_cdrom_is_changed_and_ejected_on_its_host(
        engine: LoopbackEngine) -> None:
    hyp, vm_id = await _running_vm(engine)
    drive = hyp._vms[vm_id].cdrom
    assert drive is not None and drive.source is None  # every VM runs with an empty drive
    iso_id, source = await _iso(engine, "install.iso")

    job_id = await _change(engine, vm_id, str(iso_id))
    assert job_id is not None and (await engine.job(job_id)).state == "done"
    assert hyp._vms[vm_id].cdrom == drive.model_copy(update={"source": source})
    async with engine.session() as session:
        steps = [s.description for s in (await session.execute(
            select(Step).where(Step.job_id == job_id))).scalars()]
    assert steps == ["Inserting ISO install.iso into VM web on host h1"]
    vm = await engine.vm(vm_id)
    assert (vm.cdrom_current_disk_id, vm.cdrom_disk_id) == (iso_id, None)  # next run: as was

    with pytest.raises(Conflict, match="in the cdrom of running VM web; eject it first"):
        async with engine.session() as session:
            disk = await session.get(Disk, iso_id)
            user = await session.get(User, engine.user_id)
            assert disk is not None and user is not None
            await devices.remove_disk_job(session, engine.jobs, disk, user)

    job_id = await _change(engine, vm_id, None)
    assert job_id is not None and (await engine.job(job_id)).state == "done"
    assert hyp._vms[vm_id].cdrom == drive
    assert (await engine.vm(vm_id)).cdrom_current_disk_id is None


async def test_a_failed_change_leaves_the_media_as_it_was(engine: LoopbackEngine) -> None:
    hyp, vm_id = await _running_vm(engine)
    iso_id, _source = await _iso(engine, "broken.iso")

    async def refuse(*_args: object) -> None:
        raise NodeFailure(ErrorCode.HYPERVISOR_ERROR, "the tray is locked by the guest")
    hyp.change_cdrom = refuse  # type: ignore[method-assign,assignment]
    job_id = await _change(engine, vm_id, str(iso_id))
    assert job_id is not None
    ended = await engine.job(job_id)
    assert ended.state == "failed" and "tray is locked" in (ended.error or "")
    assert (await engine.vm(vm_id)).cdrom_current_disk_id is None
    drive = hyp._vms[vm_id].cdrom
    assert drive is not None and drive.source is None


async def test_run_once_boots_from_the_cdrom_given_for_that_run_only(
        engine: LoopbackEngine) -> None:
    node = await engine.add_host("h1")
    assert isinstance(node.hypervisor, SimulatedHypervisor)
    vm_id = await engine.add_vm("installer")
    iso_id, source = await _iso(engine, "netinst.iso")
    await _change(engine, vm_id, None, current=False)

    once = RunOnce(boot=["cdrom", "hd"], cdrom_given=True, cdrom_file=str(iso_id))
    job = await engine.act(vms.start_vm, vm_id, run_once=once)
    assert (await engine.job(job.id)).state == "done"
    spec = node.hypervisor.started_specs[vm_id]
    assert spec.boot == (BootDevice.CDROM, BootDevice.HD)
    assert spec.cdrom is not None and spec.cdrom.source == source
    vm = await engine.vm_reaches(vm_id, [VmStatus.UP])
    assert (vm.cdrom_current_disk_id, vm.cdrom_disk_id, vm.boot_devices) == \
        (iso_id, None, ["hd"])

    assert (await engine.job((await engine.act(vms.stop_vm, vm_id)).id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.DOWN])
    assert (await engine.job((await engine.act(vms.start_vm, vm_id)).id)).state == "done"
    again = node.hypervisor.started_specs[vm_id]
    assert again.boot == (BootDevice.HD,)
    assert again.cdrom is not None and again.cdrom.source is None


async def test_a_vm_with_an_iso_of_its_hosts_local_storage_in_its_drive_stays_there(
        engine: LoopbackEngine) -> None:
    hyp, vm_id = await _running_vm(engine)
    await engine.add_host("h2")
    async with engine.session() as session:
        vm = await session.get(Vm, vm_id)
        cluster = await session.get(Cluster, engine.cluster_id)
        assert vm is not None and cluster is not None
        domain = StorageDomain(id=uuid.uuid4(), name="h1-isos", storage_type="localfs",
                               path=str(engine.directory / "h1-isos"), host_id=vm.host_id,
                               data_center_id=cluster.data_center_id,
                               status=StorageDomainStatus.ACTIVE)
        session.add(domain)
        await session.flush()
        disk = Disk(id=uuid.uuid4(), name="local.iso", storage_domain_id=domain.id,
                    provisioned_size=MIB, format="raw", sparse=False, status=DiskStatus.OK,
                    image_path="images/local.iso", content_type="iso")
        session.add(disk)
    job_id = await _change(engine, vm_id, str(disk.id))
    assert job_id is not None and (await engine.job(job_id)).state == "done"

    with pytest.raises(Conflict, match=r"ISO local\.iso in its cdrom is on local storage"):
        await engine.act(vms.migrate_vm, vm_id)
    assert (await engine.vm(vm_id)).status == VmStatus.UP
    assert hyp._vms[vm_id].state.value == "running"


async def test_a_run_once_iso_on_a_hosts_local_storage_starts_the_vm_there(
        engine: LoopbackEngine) -> None:
    await engine.add_host("h1")
    h2 = await engine.add_host("h2", memory_mib=1024)  # the scheduler would pick h1
    vm_id = await engine.add_vm("installer")
    async with engine.session() as session:
        cluster = await session.get(Cluster, engine.cluster_id)
        assert cluster is not None
        domain = StorageDomain(id=uuid.uuid4(), name="h2-isos", storage_type="localfs",
                               path=str(engine.directory / "h2-isos"), host_id=h2.host_id,
                               data_center_id=cluster.data_center_id,
                               status=StorageDomainStatus.ACTIVE)
        session.add(domain)
        await session.flush()
        disk = Disk(id=uuid.uuid4(), name="h2.iso", storage_domain_id=domain.id,
                    provisioned_size=MIB, format="raw", sparse=False, status=DiskStatus.OK,
                    image_path="images/h2.iso", content_type="iso")
        session.add(disk)
    once = RunOnce(boot=["cdrom"], cdrom_given=True, cdrom_file=str(disk.id))
    job = await engine.act(vms.start_vm, vm_id, run_once=once)
    assert (await engine.job(job.id)).state == "done"
    vm = await engine.vm_reaches(vm_id, [VmStatus.UP])
    assert vm.host_id == h2.host_id
    spec = h2.hypervisor.started_specs[vm_id]
    assert spec.cdrom is not None and spec.cdrom.source is not None
