"""VM jobs over the fast lane: service, job, agent, events and monitor, end to end."""

from __future__ import annotations

from sqlalchemy import select

from overt.engine.db.tables import AuditEvent, Lock
from overt.engine.model.status import VmStatus
from overt.engine.services import vms
from overt.protocol.host import VmState
from tests.support.loopback import LoopbackEngine


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
