"""One lifecycle for every job kind, over the fast lane: a job acts and then waits for what
the monitor observes (it never writes the outcome), the user's wish is kept apart from the
observed status, a failure is compensated in the transaction that releases the locks, and
a stored job this engine cannot read fails cleanly."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from overt.engine.api import views
from overt.engine.db.tables import AuditEvent, Disk, Host, Job, Lock, Step, StorageDomain
from overt.engine.jobs import queue
from overt.engine.jobs.context import JobContext
from overt.engine.jobs.handlers import UNITS
from overt.engine.jobs.kinds import InstallHost
from overt.engine.model.status import DiskStatus, HostStatus, VmStatus
from overt.engine.queries.lookup import Ref
from overt.engine.services import consoles, devices, host_facts, vms
from overt.engine.services.inputs import DiskAttachmentInput, DiskInput, VmInput
from overt.node.errors import NodeFailure
from overt.protocol import ErrorCode
from overt.protocol.host import VmState
from tests.support.loopback import LoopbackEngine, SimulatedNode

Action = Callable[..., Awaitable[Job]]


async def _up(engine: LoopbackEngine, name: str = "web") -> tuple[SimulatedNode, uuid.UUID]:
    node = engine.hosts.get("h1") or await engine.add_host("h1")
    vm_id = await engine.add_vm(name)
    job = await engine.job((await engine.act(vms.start_vm, vm_id)).id)
    assert job.state == "done", job.error
    return node, vm_id


async def _node_states(node: SimulatedNode) -> list[VmState]:
    return [r.state for r in await node.hypervisor.list_vms()]


async def _locks(engine: LoopbackEngine) -> list[Any]:
    async with engine.session() as session:
        return list((await session.execute(select(Lock))).scalars())


@pytest.mark.parametrize(("action", "on_the_way", "reached", "wish"), [
    (vms.stop_vm, {VmStatus.UP}, VmStatus.DOWN, VmStatus.DOWN),
    (vms.shutdown_vm, {VmStatus.POWERING_DOWN}, VmStatus.DOWN, VmStatus.DOWN),
    (vms.suspend_vm, {VmStatus.SAVING_STATE}, VmStatus.SUSPENDED, VmStatus.SUSPENDED),
])
async def test_a_job_ending_a_vm_waits_for_the_monitor_to_see_it_end(
        engine: LoopbackEngine, action: Action, on_the_way: set[VmStatus], reached: VmStatus,
        wish: VmStatus) -> None:
    """With the node's events held up, the VM is off on its node while the engine still
    shows it on its way, and the job still runs; the event settles both."""
    node, vm_id = await _up(engine)
    engine.bus.attach(None)  # events wait at the node; commands still go through
    job = await engine.act(action, vm_id)
    await engine.eventually(lambda: _no_vm_runs(node), what="the VM to end on its node")
    await asyncio.sleep(0.3)
    vm = await engine.vm(vm_id)
    assert VmStatus(vm.status) in on_the_way and vm.host_id == node.host_id
    assert vm.desired_status == wish.value  # what the user asked, from the submission on
    async with engine.session() as session:
        assert (await session.get(Job, job.id)).state == "running"  # type: ignore[union-attr]
    engine.bus.attach(engine.monitor.apply)
    assert (await engine.job(job.id)).state == "done"
    vm = await engine.vm(vm_id)
    assert (vm.status, vm.host_id, vm.desired_status) == (reached.value, None, wish.value)
    assert await _locks(engine) == []


async def _no_vm_runs(node: SimulatedNode) -> bool:
    return VmState.RUNNING not in await _node_states(node)


async def test_a_stop_of_a_vm_its_node_no_longer_runs_is_settled_by_the_monitor(
        engine: LoopbackEngine) -> None:
    """The node answers that it has no such VM: the job does not write the VM down itself;
    the monitor reads the host's state and finds it gone."""
    node, vm_id = await _up(engine)
    del node.hypervisor._vms[vm_id]  # gone from the node without a word (a lost event)
    job = await engine.job((await engine.act(vms.stop_vm, vm_id)).id)
    assert job.state == "done", job.error
    vm = await engine.vm(vm_id)
    assert (vm.status, vm.host_id) == (VmStatus.DOWN.value, None)
    assert await _locks(engine) == []


async def test_reboot_leaves_the_vm_up_and_costs_no_resync(engine: LoopbackEngine) -> None:
    _node, vm_id = await _up(engine)
    before = engine.monitor.resyncs
    job = await engine.job((await engine.act(vms.reboot_vm, vm_id)).id)
    assert job.state == "done"
    await engine.settled()
    assert (await engine.vm(vm_id)).status == VmStatus.UP.value
    assert engine.monitor.resyncs == before


async def test_a_failed_suspend_gives_the_users_wish_back_and_the_monitor_confirms(
        engine: LoopbackEngine) -> None:
    node, vm_id = await _up(engine)

    async def no_room(*_args: object) -> None:
        raise NodeFailure(ErrorCode.HYPERVISOR_ERROR, "no space left to save VM web")
    node.hypervisor.save = no_room  # type: ignore[method-assign]
    job = await engine.job((await engine.act(vms.suspend_vm, vm_id)).id)
    assert job.state == "failed"
    vm = await engine.vm(vm_id)
    assert (vm.status, vm.desired_status) == (VmStatus.UP.value, VmStatus.UP.value)
    await engine.settled()  # the host was read again, and the VM does run there
    assert (await engine.vm(vm_id)).status == VmStatus.UP.value
    assert await _node_states(node) == [VmState.RUNNING]


async def test_a_failed_start_gives_the_room_back_in_the_same_transaction(
        engine: LoopbackEngine) -> None:
    node = await engine.add_host("h1", memory_mib=1024)
    first, second = await engine.add_vm("a", memory_mib=768), await engine.add_vm("b",
                                                                                memory_mib=768)
    node.hypervisor._memory_mib = 512  # the node has less room than the engine believes
    job = await engine.job((await engine.act(vms.start_vm, first)).id)
    assert job.state == "failed"
    vm = await engine.vm(first)
    assert (vm.status, vm.host_id, vm.desired_status) == (VmStatus.DOWN.value, None, "down")
    assert await _locks(engine) == []
    async with engine.session() as session:
        stored = await session.get(Job, job.id)
    assert stored is not None and "vnc_password" not in stored.params
    node.hypervisor._memory_mib = 1024
    assert (await engine.job((await engine.act(vms.start_vm, second)).id)).state == "done"


async def test_a_stored_job_this_engine_cannot_read_fails_and_frees_its_objects(
        engine: LoopbackEngine) -> None:
    await engine.add_host("h1")
    vm_id = await engine.add_vm("web")
    async with engine.session() as session:
        for action, params in (("vm.teleport", {"vm_id": str(vm_id)}),
                               ("vm.shutdown", {"vm_id": str(vm_id), "timeout_s": 5})):
            job = Job(id=uuid.uuid4(), action=action, params=params, vm_id=vm_id,
                      description=f"Old {action}")
            session.add(job)
            await session.flush()
            session.add(Lock(resource_type="vm", resource_id=uuid.uuid4(), job_id=job.id))
    engine.wakeup.set()
    async with engine.session() as session:
        ids = [j.id for j in (await session.execute(select(Job))).scalars()]
    ended = [await engine.job(job_id) for job_id in ids]
    assert [j.state for j in ended] == ["failed", "failed"]
    errors = {j.action: j.error for j in ended}
    assert "of a kind this engine does not know ('vm.teleport')" in errors["vm.teleport"]
    assert "has arguments this engine cannot read: timeout_s: Extra inputs" in \
        errors["vm.shutdown"]
    assert await _locks(engine) == []
    assert (await engine.vm(vm_id)).status == VmStatus.DOWN.value


async def test_a_host_refresh_asks_the_node_and_records_what_it_says(
        engine: LoopbackEngine) -> None:
    node = await engine.add_host("h1", memory_mib=2048)
    node.hypervisor._memory_mib = 3072  # memory added to the host since it was installed
    job = await engine.job((await engine.act(host_facts.refresh_host, node.host_id)).id)
    assert job.state == "done" and job.result["memory_mib"] == 3072
    assert job.host_id == node.host_id and await _locks(engine) == []
    async with engine.session() as session:
        host = await session.get(Host, node.host_id)
        steps = [(s.description, s.status) for s in (await session.execute(
            select(Step).where(Step.job_id == job.id))).scalars()]
    assert host is not None and host.memory_mib == 3072
    assert steps == [("Asking host h1 for its capabilities", "finished")]


async def test_a_failed_install_marks_the_host_and_says_why(engine: LoopbackEngine) -> None:
    """The install's compensation, run as the worker runs it: in the failure's transaction."""
    await engine.worker.stop()
    node = await engine.add_host("h1")
    spec = InstallHost(host_id=node.host_id)
    async with engine.session() as session:
        host = await session.get(Host, node.host_id)
        assert host is not None
        host.status = HostStatus.INSTALLING.value
        job = await queue.submit(session, spec, description="Installing host h1")
        assert [(lock.resource_type, lock.resource_id) for lock in (await session.execute(
            select(Lock))).scalars()] == [("host", node.host_id)]
    async with engine.session() as session:
        context = JobContext(job, engine.db, engine.worker.services)
        await UNITS[InstallHost].compensate(session, context, spec, "the node did not answer")
    async with engine.session() as session:
        host = await session.get(Host, node.host_id)
        said = (await session.execute(select(AuditEvent.description).where(
            AuditEvent.job_id == job.id))).scalars().all()
    assert host is not None
    assert (host.status, host.status_detail) == (HostStatus.INSTALL_FAILED.value,
                                                 "the node did not answer")
    assert said == ["Installing host h1 failed: the node did not answer"]


async def test_a_change_to_a_running_vm_waits_for_its_next_start(engine: LoopbackEngine) -> None:
    """`spec_version` is the configuration's version; the node reports the one the VM runs
    with; the API's `next_run_configuration_exists` says when they differ."""
    _node, vm_id = await _up(engine)
    vm = await engine.vm(vm_id)
    assert (vm.spec_version, vm.running_spec_version) == (1, 1)
    assert views.vm(vm)["next_run_configuration_exists"] is False
    async with engine.session() as session:
        user = await session.get(vms.User, engine.user_id)
        assert user is not None
        await vms.update_vm(session, vm_id, VmInput(memory_bytes=512 << 20), user)
    vm = await engine.vm(vm_id)
    assert (vm.spec_version, vm.running_spec_version) == (2, 1)
    assert views.vm(vm)["next_run_configuration_exists"] is True
    assert (await engine.job((await engine.act(vms.stop_vm, vm_id)).id)).state == "done"
    vm = await engine.vm(vm_id)
    assert vm.running_spec_version is None
    assert views.vm(vm)["next_run_configuration_exists"] is False
    assert (await engine.job((await engine.act(vms.start_vm, vm_id)).id)).state == "done"
    vm = await engine.vm(vm_id)
    assert (vm.spec_version, vm.running_spec_version, vm.memory_mib) == (2, 2, 512)
    assert views.vm(vm)["next_run_configuration_exists"] is False


@pytest.mark.parametrize(("action", "command", "step"), [
    (vms.stop_vm, "destroy", "Stopping VM web on host h1"),
    (vms.shutdown_vm, "shutdown", "Shutting down VM web on host h1"),
])
async def test_a_vm_the_node_fails_to_end_stays_up_and_wanted_up(
        engine: LoopbackEngine, action: Action, command: str, step: str) -> None:
    node, vm_id = await _up(engine)

    async def refused(*_args: object, **_kwargs: object) -> None:
        raise NodeFailure(ErrorCode.HYPERVISOR_ERROR, "the domain does not answer")
    setattr(node.hypervisor, command, refused)
    job = await engine.job((await engine.act(action, vm_id)).id)
    assert job.state == "failed" and "the domain does not answer" in job.error
    vm = await engine.vm(vm_id)
    assert (vm.status, vm.desired_status) == (VmStatus.UP.value, VmStatus.UP.value)
    async with engine.session() as session:
        steps = [(s.description, s.status) for s in (await session.execute(
            select(Step).where(Step.job_id == job.id))).scalars()]
    assert steps == [(step, "failed")]
    assert await _locks(engine) == []
    assert await _node_states(node) == [VmState.RUNNING]


async def test_a_failed_ticket_forgets_its_password_too(engine: LoopbackEngine) -> None:
    node, vm_id = await _up(engine)

    async def refused(*_args: object) -> None:
        raise NodeFailure(ErrorCode.HYPERVISOR_ERROR, "no console on this VM")
    node.hypervisor.set_ticket = refused  # type: ignore[method-assign]
    ticket = await engine.act(consoles.request_ticket, vm_id, password="s3cret")
    job = await engine.job(ticket.job.id)
    assert job.state == "failed" and "no console on this VM" in job.error
    assert "password" not in job.params


async def test_removing_a_vm_removes_its_disks_on_their_storage_step_by_step(
        engine: LoopbackEngine) -> None:
    await engine.add_host("h1")
    vm_id = await engine.add_vm("web")
    async with engine.session() as session:
        vm = await session.get(vms.Vm, vm_id)
        user = await session.get(vms.User, engine.user_id)
        assert vm is not None and user is not None
        attachment = await devices.add_disk_attachment(session, engine.jobs, vm, DiskAttachmentInput(
            disk=DiskInput(name="web_disk1", provisioned_size=1 << 30, format="cow",
                           storage_domain=Ref(name="h1-local"))), user)
    await engine.settled()  # the disk's creation
    async with engine.session() as session:
        disk = await session.get(Disk, attachment.disk_id)
        domain = await session.get(StorageDomain, disk.storage_domain_id)  # type: ignore[union-attr]
        assert disk is not None and domain is not None and disk.status == DiskStatus.OK.value
        image = Path(domain.path) / disk.image_path
    assert await asyncio.to_thread(image.exists)
    job = await engine.job((await engine.act(vms.remove_vm, vm_id)).id)
    assert job.state == "done", job.error
    async with engine.session() as session:
        steps = [(s.description, s.status) for s in (await session.execute(
            select(Step).where(Step.job_id == job.id))).scalars()]
        assert await session.get(Disk, attachment.disk_id) is None
        assert await session.get(vms.Vm, vm_id) is None
    assert steps == [("Removing disk web_disk1", "finished")]
    assert not await asyncio.to_thread(image.exists)
    assert await _locks(engine) == []


def _reply_late(node: SimulatedNode, command: str) -> None:
    """The node's reply to `command` comes a while after its event (a busy broker)."""
    act = getattr(node.hypervisor, command)

    async def late(*args: Any, **kwargs: Any) -> Any:
        reply = await act(*args, **kwargs)
        await asyncio.sleep(1.0)
        return reply
    setattr(node.hypervisor, command, late)


async def test_a_vm_shown_down_is_free_for_the_next_action_at_once(
        engine: LoopbackEngine) -> None:
    """The monitor releases the VM in the transaction that records its end, so a user who
    sees it down may act on it before the job has heard its node's reply."""
    node, vm_id = await _up(engine)
    _reply_late(node, "shutdown")
    job = await engine.act(vms.shutdown_vm, vm_id)
    await engine.vm_reaches(vm_id, [VmStatus.DOWN])
    removal = await engine.act(vms.remove_vm, vm_id)  # no "locked by job": it is free
    assert (await engine.job(job.id)).state == "done"
    assert (await engine.job(removal.id)).state == "done"
    async with engine.session() as session:
        said = (await session.execute(select(AuditEvent.description).where(
            AuditEvent.job_id == job.id))).scalars().all()
        assert await session.get(vms.Vm, vm_id) is None
    assert said == ["VM web was shut down"]


async def test_a_vm_shown_up_is_free_for_the_next_action_at_once(
        engine: LoopbackEngine) -> None:
    """The monitor releases a start's VM in the transaction that records it up, so a user
    who sees it up may stop it at once (no "locked by job" while the start's own
    bookkeeping ends)."""
    node = await engine.add_host("h1")
    vm_id = await engine.add_vm("web")
    _reply_late(node, "start")
    job = await engine.act(vms.start_vm, vm_id)
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    stop = await engine.act(vms.stop_vm, vm_id)  # refused with 409 before the release
    assert (await engine.job(job.id)).state == "done"
    assert (await engine.job(stop.id)).state == "done"
    assert (await engine.vm(vm_id)).status == VmStatus.DOWN
    assert await _node_states(node) == []
    assert await _locks(engine) == []


async def test_a_vm_shown_suspended_resumes_from_its_memory_at_once(
        engine: LoopbackEngine) -> None:
    node, vm_id = await _up(engine)
    _reply_late(node, "save")
    job = await engine.act(vms.suspend_vm, vm_id)
    vm = await engine.vm_reaches(vm_id, [VmStatus.SUSPENDED])
    assert vm.saved_state_path and vm.saved_state_host_id == node.host_id
    start = await engine.act(vms.start_vm, vm_id)
    assert (await engine.vm(vm_id)).status == VmStatus.RESTORING_STATE.value
    assert (await engine.job(job.id)).state == "done"
    assert (await engine.job(start.id)).state == "done"
    vm = await engine.vm_reaches(vm_id, [VmStatus.UP])
    assert vm.saved_state_path is None and await _node_states(node) == [VmState.RUNNING]
