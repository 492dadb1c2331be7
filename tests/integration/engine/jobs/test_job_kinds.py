"""Every job kind over the fast lane: the checks at submission, the locks it holds, the
steps users see, and what it undoes when it fails."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from overt.engine import audit
from overt.engine.db.tables import AuditEvent, Disk, Job, Lock, Step, StorageDomain
from overt.engine.model.errors import Conflict
from overt.engine.model.status import DiskStatus, VmStatus
from overt.engine.queries.lookup import Ref
from overt.engine.services import consoles, devices, vms
from overt.engine.services.inputs import DiskInput
from overt.node.errors import NodeFailure
from overt.protocol import ErrorCode
from tests.support.loopback import LoopbackEngine

GIB = 1 << 30


async def _steps(engine: LoopbackEngine, job_id: uuid.UUID) -> list[tuple[str, str]]:
    async with engine.session() as session:
        return [(s.description, s.status) for s in (await session.execute(
            select(Step).where(Step.job_id == job_id).order_by(Step.number))).scalars()]


async def _done(engine: LoopbackEngine, job: Job) -> Job:
    ended = await engine.job(job.id)
    assert ended.state == "done", ended.error
    return ended


async def test_each_vm_action_checks_the_vms_status_at_once(engine: LoopbackEngine) -> None:
    await engine.add_host("h1")
    vm_id = await engine.add_vm("web")
    for action, refusal in ((vms.suspend_vm, "Cannot suspend VM web: the VM is down."),
                            (vms.reboot_vm, "Cannot reboot VM web: the VM is down."),
                            (vms.shutdown_vm, "Cannot shut down VM web: the VM is down."),
                            (vms.stop_vm, "Cannot stop VM web: the VM is down.")):
        with pytest.raises(Conflict) as refused:
            await engine.act(action, vm_id)
        assert refused.value.detail == refusal
    with pytest.raises(Conflict, match="Cannot open the console of VM web: it is down"):
        await engine.act(consoles.request_ticket, vm_id)
    await _done(engine, await engine.act(vms.start_vm, vm_id))
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    for action, refusal in ((vms.start_vm, "Cannot run VM web: the VM is up."),
                            (vms.remove_vm, "Cannot remove VM web: the VM is up.")):
        with pytest.raises(Conflict) as refused:
            await engine.act(action, vm_id)
        assert refused.value.detail == refusal
    async with engine.session() as session:
        assert [j.action for j in (await session.execute(select(Job))).scalars()] == \
            ["vm.start"]


async def test_a_job_locks_its_vm_until_it_ends(engine: LoopbackEngine) -> None:
    await engine.add_host("h1")
    vm_id = await engine.add_vm("web")
    await engine.worker.stop()  # the job waits in the queue, holding its lock
    job = await engine.act(vms.start_vm, vm_id)
    async with engine.session() as session:
        locks = [(lock.resource_type, lock.resource_id, lock.job_id)
                 for lock in (await session.execute(select(Lock))).scalars()]
    assert locks == [("vm", vm_id, job.id)]
    with pytest.raises(Conflict, match=f"the vm is locked by job {job.id}"):
        await engine.act(vms.stop_vm, vm_id)


async def test_the_steps_of_vm_jobs_say_what_happened_where(engine: LoopbackEngine) -> None:
    await engine.add_host("h1")
    vm_id = await engine.add_vm("web")
    expected = [(vms.start_vm, "Starting VM web on host h1"),
                (vms.suspend_vm, "Saving the memory of VM web on host h1"),
                (vms.start_vm, "Starting VM web on host h1"),
                (vms.reboot_vm, "Rebooting VM web on host h1"),
                (vms.shutdown_vm, "Shutting down VM web on host h1"),
                (vms.start_vm, "Starting VM web on host h1"),
                (vms.stop_vm, "Stopping VM web on host h1")]
    for action, step in expected:
        job = await _done(engine, await engine.act(action, vm_id))
        assert await _steps(engine, job.id) == [(step, "finished")]
        await engine.settled()


async def test_a_console_ticket_reaches_the_vms_host_and_its_password_is_forgotten(
        engine: LoopbackEngine) -> None:
    await engine.add_host("h1")
    vm_id = await engine.add_vm("web")
    await _done(engine, await engine.act(vms.start_vm, vm_id))
    vm = await engine.vm_reaches(vm_id, [VmStatus.UP])
    ticket = await engine.act(consoles.request_ticket, vm_id, password="s3cret")
    job = await _done(engine, ticket.job)
    assert job.result["vnc_port"] == vm.vnc_port
    assert "password" not in job.params  # a secret is kept no longer than its job needs it
    assert await _steps(engine, job.id) == [
        ("Setting the console ticket of VM web on host h1", "finished")]


async def test_a_failed_suspend_leaves_the_vm_running(engine: LoopbackEngine) -> None:
    node = await engine.add_host("h1")
    vm_id = await engine.add_vm("web")
    await _done(engine, await engine.act(vms.start_vm, vm_id))
    await engine.vm_reaches(vm_id, [VmStatus.UP])

    async def no_room(*_args: object) -> None:
        raise NodeFailure(ErrorCode.HYPERVISOR_ERROR, "no space left to save VM web")
    node.hypervisor.save = no_room  # type: ignore[method-assign]
    job = await engine.job((await engine.act(vms.suspend_vm, vm_id)).id)
    assert job.state == "failed" and "no space left to save VM web" in (job.error or "")
    assert (await engine.vm(vm_id)).status == VmStatus.UP.value
    assert await _steps(engine, job.id) == [
        ("Saving the memory of VM web on host h1", "failed")]
    async with engine.session() as session:
        assert (await session.execute(select(Lock))).all() == []


async def test_a_failed_start_puts_the_vm_down_and_says_why(engine: LoopbackEngine) -> None:
    node = await engine.add_host("h1", memory_mib=1024)
    vm_id = await engine.add_vm("web", memory_mib=768)
    node.hypervisor._memory_mib = 512  # the node has less room than the engine believes
    job = await engine.job((await engine.act(vms.start_vm, vm_id)).id)
    assert job.state == "failed"
    assert await _steps(engine, job.id) == [("Starting VM web on host h1", "failed")]
    vm = await engine.vm(vm_id)
    assert (vm.status, vm.host_id, vm.desired_status) == (VmStatus.DOWN.value, None, "down")
    async with engine.session() as session:
        said = [e.description for e in (await session.execute(
            select(AuditEvent).where(AuditEvent.job_id == job.id))).scalars()]
    assert any(d.startswith("Failed to run VM web: h1: host h1 has not 768 MiB free")
               for d in said), said


async def test_a_disk_is_created_on_its_hosts_storage_and_removed(
        engine: LoopbackEngine) -> None:
    await engine.add_host("h1")
    domain = Ref(name="h1-local")
    disk = await engine.act(devices.add_disk, DiskInput(
        name="data", provisioned_size=GIB, format="cow", storage_domain=domain))
    async with engine.session() as session:
        job = (await session.execute(select(Job).where(Job.action == "disk.create"))
               ).scalar_one()
        path = (await session.get(StorageDomain, disk.storage_domain_id)).path  # type: ignore[union-attr]
    await _done(engine, job)
    assert await _steps(engine, job.id) == [
        ("Creating disk data on storage domain h1-local", "finished")]
    async with engine.session() as session:
        created = await session.get(Disk, disk.id)
        assert created is not None and created.status == DiskStatus.OK.value
        image = f"{path}/{created.image_path}"
        await devices.remove_disk_job(session, engine.jobs, created, await _user(engine))
    removal = await _last_job(engine, "disk.remove")
    await _done(engine, removal)
    async with engine.session() as session:
        assert await session.get(Disk, disk.id) is None
    assert not await asyncio.to_thread(Path(image).exists)


async def test_a_disk_the_node_cannot_create_is_removed(engine: LoopbackEngine) -> None:
    """oVirt's AddDisk on failure: the disk goes (never `illegal`), and the removal of
    whatever part of its image was made says what it could not take away."""
    await engine.add_host("h1")
    async with engine.session() as session:
        domain = (await session.execute(select(StorageDomain))).scalar_one()
        domain.path = "/nowhere/the/node/keeps/images"  # outside the node's storage
    disk = await engine.act(devices.add_disk, DiskInput(
        name="data", provisioned_size=GIB, format="cow", storage_domain=Ref(name="h1-local")))
    job = await engine.job((await _last_job(engine, "disk.create")).id)
    assert job.state == "failed" and "outside this node's storage directory" in (job.error or "")
    async with engine.session() as session:
        assert await session.get(Disk, disk.id) is None
    await engine.settled()
    async with engine.session() as session:
        assert (await session.execute(select(Lock))).all() == []
        said = (await session.execute(select(AuditEvent.description).where(
            AuditEvent.code == audit.DISK_ADD_FAILED))).scalars().all()
        removal = (await session.execute(select(Job).where(
            Job.action == "storage.remove_volumes"))).scalar_one()
    assert len(said) == 1 and said[0].startswith("Creating disk data failed: ")
    assert "The disk was removed" in said[0]
    assert removal.state == "failed"  # the domain's path is outside the node's storage


async def _user(engine: LoopbackEngine) -> vms.User:
    async with engine.session() as session:
        user = await session.get(vms.User, engine.user_id)
    assert user is not None
    return user


async def _last_job(engine: LoopbackEngine, action: str) -> Job:
    async with engine.session() as session:
        return (await session.execute(select(Job).where(Job.action == action)
                                      .order_by(Job.start_time.desc()))).scalars().first()  # type: ignore[return-value]
