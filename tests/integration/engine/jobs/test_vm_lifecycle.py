"""VM jobs over the fast lane: service, job, agent, events and monitor, end to end."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from overt.engine.db.tables import AuditEvent, Host, Job, Lock
from overt.engine.model.status import VmStatus
from overt.engine.services import vms
from overt.protocol.host import VmState
from tests.support.loopback import LoopbackEngine, SimulatedNode


async def _states(engine: LoopbackEngine, name: str) -> dict[str, VmState]:
    return {r.name: r.state for r in await engine.hosts[name].hypervisor.list_vms()}


async def test_a_vm_starts_suspends_resumes_reboots_and_stops(engine: LoopbackEngine) -> None:
    node = await engine.add_host("h1")
    vm_id = await engine.add_vm("web")

    job = await engine.act(vms.start_vm, vm_id)
    assert (await engine.job(job.id)).state == "done"
    vm = await engine.vm_reaches(vm_id, [VmStatus.UP])
    assert vm.host_id == node.host_id and vm.vnc_port is not None
    assert await _states(engine, "h1") == {"web": VmState.RUNNING}

    job = await engine.act(vms.suspend_vm, vm_id)
    assert (await engine.job(job.id)).state == "done"
    vm = await engine.vm_reaches(vm_id, [VmStatus.SUSPENDED])
    assert vm.host_id is None and vm.saved_state_host_id == node.host_id
    assert await _states(engine, "h1") == {}

    job = await engine.act(vms.start_vm, vm_id)  # resumes from the saved memory
    assert (await engine.job(job.id)).state == "done"
    vm = await engine.vm_reaches(vm_id, [VmStatus.UP])
    assert vm.saved_state_path is None and vm.host_id == node.host_id

    job = await engine.act(vms.reboot_vm, vm_id)
    assert (await engine.job(job.id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.UP])

    job = await engine.act(vms.stop_vm, vm_id)
    assert (await engine.job(job.id)).state == "done"
    vm = await engine.vm_reaches(vm_id, [VmStatus.DOWN])
    assert vm.host_id is None and vm.vnc_port is None
    assert await _states(engine, "h1") == {}
    await engine.settled()
    async with engine.session() as session:
        assert (await session.execute(select(Lock))).all() == []
        said = [e.description for e in (await session.execute(
            select(AuditEvent).where(AuditEvent.vm_id == vm_id).order_by(AuditEvent.id)
        )).scalars()]
    assert said == ["VM web started on host h1", "VM web was suspended to disk on host h1",
                     "VM web started on host h1", "VM web was rebooted", "VM web powered off"]


async def test_a_shutdown_stops_the_vm_and_removing_it_forgets_it(engine: LoopbackEngine) -> None:
    await engine.add_host("h1")
    vm_id = await engine.add_vm("db")
    await engine.job((await engine.act(vms.start_vm, vm_id)).id)
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    job = await engine.act(vms.shutdown_vm, vm_id)
    assert (await engine.job(job.id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.DOWN])
    assert await _states(engine, "h1") == {}
    job = await engine.act(vms.remove_vm, vm_id)
    assert (await engine.job(job.id)).state == "done"
    async with engine.session() as session:
        assert await session.get(vms.Vm, vm_id) is None


async def test_a_vms_own_events_settle_it_without_resyncing_its_host(
        engine: LoopbackEngine) -> None:
    await engine.add_host("h1")
    vm_id = await engine.add_vm("web")
    before = engine.monitor.resyncs
    for action, status in ((vms.start_vm, VmStatus.UP), (vms.suspend_vm, VmStatus.SUSPENDED),
                           (vms.start_vm, VmStatus.UP), (vms.reboot_vm, VmStatus.UP),
                           (vms.shutdown_vm, VmStatus.DOWN), (vms.start_vm, VmStatus.UP),
                           (vms.suspend_vm, VmStatus.SUSPENDED), (vms.stop_vm, VmStatus.DOWN),
                           (vms.start_vm, VmStatus.UP), (vms.stop_vm, VmStatus.DOWN)):
        job = await engine.job((await engine.act(action, vm_id)).id)
        assert job.state == "done", job.error
        assert (await engine.vm(vm_id)).status == status.value  # when the job ends, not later
    await engine.settled()
    async with engine.session() as session:
        assert (await session.execute(select(Host.needs_resync))).scalars().all() == [False]
    assert engine.monitor.resyncs == before


async def test_a_start_waits_for_the_monitor_to_see_the_vm_run(engine: LoopbackEngine) -> None:
    """The job never writes what it expects: with the nodes' events held up, the VM runs on
    its host while the engine still shows it launching, until the monitor hears of it."""
    node = await engine.add_host("h1")
    vm_id = await engine.add_vm("web")
    engine.bus.attach(None)  # events wait at the nodes; commands still go through
    job = await engine.act(vms.start_vm, vm_id)
    await engine.eventually(lambda: _running(node), what="the VM to run on the node")
    await asyncio.sleep(0.3)
    assert (await engine.vm(vm_id)).status == VmStatus.WAIT_FOR_LAUNCH.value
    async with engine.session() as session:
        assert (await session.get(Job, job.id)).state == "running"  # type: ignore[union-attr]
    engine.bus.attach(engine.monitor.apply)
    assert (await engine.job(job.id)).state == "done"
    assert (await engine.vm(vm_id)).status == VmStatus.UP.value


async def _running(node: SimulatedNode) -> bool:
    return [r.state for r in await node.hypervisor.list_vms()] == [VmState.RUNNING]



async def test_a_start_whose_event_was_lost_with_its_agent_is_settled_by_the_next_run(
        engine: LoopbackEngine) -> None:
    """The node started the VM, then its agent restarted before the start's event reached
    the engine: the new run's full report shows the VM running, which settles the job."""
    node = await engine.add_host("h1")
    vm_id = await engine.add_vm("web")
    engine.bus.attach(None)
    job = await engine.act(vms.start_vm, vm_id)
    await engine.eventually(lambda: _running(node), what="the VM to run on the node")
    await engine.restart_agent("h1")
    engine.bus.attach(engine.monitor.apply)
    assert (await engine.job(job.id)).state == "done"
    vm = await engine.vm(vm_id)
    assert (vm.status, vm.host_id) == (VmStatus.UP.value, node.host_id)
