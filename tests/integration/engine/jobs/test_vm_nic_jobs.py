"""The `vm.nic` job over the fast lane: a running VM's NIC is plugged, relinked and
unplugged on its host; a failure puts the NIC's record back as the domain has it."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from overt.engine.db.tables import Job, Step, User, Vm, VmNic, VnicProfile
from overt.engine.model.errors import Conflict
from overt.engine.model.status import VmStatus
from overt.engine.queries.lookup import Ref
from overt.engine.services import vm_nics, vms
from overt.engine.services.inputs import NicInput
from overt.node.errors import NodeFailure
from overt.node.simulated.hypervisor import SimulatedHypervisor
from overt.protocol import ErrorCode
from tests.support.loopback import LoopbackEngine


async def _change(engine: LoopbackEngine, vm_id: uuid.UUID, nic_id: uuid.UUID | None,
                  data: NicInput) -> tuple[VmNic, Job | None]:
    async with engine.session() as session:
        vm = await session.get(Vm, vm_id)
        user = await session.get(User, engine.user_id)
        assert vm is not None
        if nic_id is None:
            return await vm_nics.add_nic(session, engine.jobs, vm, data, user)
        return await vm_nics.update_nic(session, engine.jobs, vm, nic_id, data, user)


async def _running_vm(engine: LoopbackEngine) -> tuple[SimulatedHypervisor, uuid.UUID, Ref]:
    node = await engine.add_host("h1")
    vm_id = await engine.add_vm("web")
    assert (await engine.job((await engine.act(vms.start_vm, vm_id)).id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    async with engine.session() as session:
        profile = (await session.execute(select(VnicProfile).where(
            VnicProfile.name == "ovirtmgmt"))).scalar_one()
    assert isinstance(node.hypervisor, SimulatedHypervisor)
    return node.hypervisor, vm_id, Ref(id=profile.id)


async def test_a_nic_is_plugged_relinked_and_unplugged_on_the_vms_host(
        engine: LoopbackEngine) -> None:
    hyp, vm_id, profile = await _running_vm(engine)
    nic, job = await _change(engine, vm_id, None, NicInput(name="hot1", vnic_profile=profile))
    assert job is not None and (await engine.job(job.id)).state == "done"
    live = hyp._vms[vm_id].nics
    assert list(live) == [nic.mac] and live[nic.mac].linked
    async with engine.session() as session:
        steps = [s.description for s in (await session.execute(
            select(Step).where(Step.job_id == job.id))).scalars()]
    assert steps == ["Plugging NIC hot1 of VM web on host h1"]

    _nic, job = await _change(engine, vm_id, nic.id, NicInput(linked=False))
    assert job is not None and (await engine.job(job.id)).state == "done"
    assert hyp._vms[vm_id].nics[nic.mac].linked is False

    with pytest.raises(Conflict, match="unplug it first"):
        async with engine.session() as session:
            vm = await session.get(Vm, vm_id)
            assert vm is not None
            await vm_nics.remove_nic(session, vm, nic.id)
    with pytest.raises(Conflict, match="Cannot change mac of NIC hot1"):
        await _change(engine, vm_id, nic.id, NicInput(mac="56:6f:00:00:12:34"))

    _nic, job = await _change(engine, vm_id, nic.id, NicInput(plugged=False))
    assert job is not None and (await engine.job(job.id)).state == "done"
    assert hyp._vms[vm_id].nics == {}


async def test_a_failed_plug_leaves_the_nic_unplugged(engine: LoopbackEngine) -> None:
    hyp, vm_id, profile = await _running_vm(engine)

    async def refuse(*_args: object) -> None:
        raise NodeFailure(ErrorCode.HYPERVISOR_ERROR, "no free PCI slot in VM web")
    hyp.plug_nic = refuse  # type: ignore[method-assign,assignment]
    nic, job = await _change(engine, vm_id, None, NicInput(name="hot1", vnic_profile=profile))
    assert job is not None
    ended = await engine.job(job.id)
    assert ended.state == "failed" and "no free PCI slot" in (ended.error or "")
    async with engine.session() as session:
        again = await session.get(VmNic, nic.id)
    assert again is not None and again.plugged is False
    assert hyp._vms[vm_id].nics == {}


async def test_a_nic_is_not_removed_while_its_unplug_is_under_way(engine: LoopbackEngine) -> None:
    hyp, vm_id, profile = await _running_vm(engine)
    nic, job = await _change(engine, vm_id, None, NicInput(name="hot1", vnic_profile=profile))
    assert job is not None and (await engine.job(job.id)).state == "done"
    await engine.worker.stop()  # the unplug waits in the queue, holding the VM's lock
    _nic, unplug = await _change(engine, vm_id, nic.id, NicInput(plugged=False))
    assert unplug is not None
    with pytest.raises(Conflict, match=f"VM web is locked by job {unplug.id}"):
        async with engine.session() as session:
            vm = await session.get(Vm, vm_id)
            assert vm is not None
            await vm_nics.remove_nic(session, vm, nic.id)
    async with engine.session() as session:
        assert await session.get(VmNic, nic.id) is not None
    assert list(hyp._vms[vm_id].nics) == [nic.mac]  # still in the domain: not forgotten
