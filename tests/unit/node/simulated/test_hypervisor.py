"""The simulated hypervisor keeps the libvirt driver's contract: states, events, failures."""

from __future__ import annotations

import uuid

import pytest

from overt.node.errors import NodeFailure
from overt.node.hypervisor.base import VmChanged
from overt.node.simulated.fleet import node_uuid, vm_uuid
from overt.node.simulated.hypervisor import SimulatedHypervisor
from overt.protocol import ErrorCode
from overt.protocol.host import HostCapabilities, KdumpStatus, VmState
from overt.protocol.vm import NicSpec, VmSpec


def _spec(memory_mib: int = 512) -> VmSpec:
    return VmSpec(id=uuid.uuid4(), name="web", memory_mib=memory_mib)


async def test_a_vm_starts_stops_and_each_change_is_an_event() -> None:
    hyp = SimulatedHypervisor(uuid.uuid4(), hostname="sim", memory_mib=1024)
    await hyp.connect()
    spec = _spec()
    started = await hyp.start(spec.id, spec, paused=False, job="j1")
    assert started.state is VmState.RUNNING and started.vnc_port is not None
    assert await hyp.free_memory_mib() == 512
    with pytest.raises(NodeFailure) as refused:
        await hyp.start(spec.id, spec, paused=False, job="j2")
    assert refused.value.code is ErrorCode.INVALID_STATE
    assert (await hyp.shutdown(spec.id, timeout_s=5, force=True)).state is VmState.GONE
    events = hyp.events()
    details = [await anext(events), await anext(events)]
    assert [(e.vm.state, e.detail) for e in details if isinstance(e, VmChanged)] == [
        (VmState.RUNNING, "started/booted"), (VmState.GONE, "stopped/shutdown")]
    assert await hyp.list_vms() == []


async def test_memory_runs_out_and_vms_it_already_runs_are_reported() -> None:
    vm_id = uuid.uuid4()
    hyp = SimulatedHypervisor(uuid.uuid4(), hostname="sim", memory_mib=1024,
                              running=[(vm_id, "old", 768)])
    assert [(r.vm_id, r.state) for r in await hyp.list_vms()] == [(vm_id, VmState.RUNNING)]
    spec = _spec(512)
    with pytest.raises(NodeFailure) as refused:
        await hyp.start(spec.id, spec, paused=False, job=None)
    assert refused.value.code is ErrorCode.NOT_ENOUGH_MEMORY
    host, vms = await hyp.counters()
    assert host.memory_free_kib == 256 * 1024 and [v.vm_id for v in vms] == [vm_id]


def test_fleet_ids_are_stable_and_distinct() -> None:
    assert node_uuid("a", 1) == node_uuid("a", 1) != node_uuid("a", 2) != node_uuid("b", 1)
    assert vm_uuid("a", 1, 0) != vm_uuid("a", 1, 1)


async def test_nics_of_a_running_vm_are_plugged_relinked_and_unplugged() -> None:
    hyp = SimulatedHypervisor(uuid.uuid4(), hostname="sim", memory_mib=1024)
    await hyp.connect()
    spec = _spec()
    nic = NicSpec(id=uuid.uuid4(), name="hot1", mac="56:6f:00:00:00:01", bridge="ovirtmgmt")
    with pytest.raises(NodeFailure) as refused:  # not running yet
        await hyp.plug_nic(spec.id, nic)
    assert refused.value.code is ErrorCode.NO_SUCH_VM
    await hyp.start(spec.id, spec, paused=False, job=None)
    with pytest.raises(NodeFailure) as refused:
        await hyp.set_nic_link(spec.id, nic.model_copy(update={"linked": False}))
    assert refused.value.code is ErrorCode.INVALID_STATE and "no plugged NIC hot1" in str(
        refused.value.message)
    assert (await hyp.plug_nic(spec.id, nic)).state is VmState.RUNNING
    await hyp.plug_nic(spec.id, nic)  # again: already there, success
    await hyp.set_nic_link(spec.id, nic.model_copy(update={"linked": False}))
    await hyp.unplug_nic(spec.id, nic)
    await hyp.unplug_nic(spec.id, nic)  # again: already gone, success
    with pytest.raises(NodeFailure):
        await hyp.set_nic_link(spec.id, nic)


async def test_its_capabilities_report_the_kdump_status_it_was_given() -> None:
    plain = SimulatedHypervisor(uuid.uuid4(), hostname="sim")
    assert (await plain.capabilities()).kdump_status is KdumpStatus.DISABLED
    dumper = SimulatedHypervisor(uuid.uuid4(), hostname="sim", kdump_status=KdumpStatus.ENABLED)
    caps = await dumper.capabilities()
    assert caps.kdump_status is KdumpStatus.ENABLED
    # An older agent reports none: the engine reads `unknown`.
    older = caps.model_dump(mode="json")
    del older["kdump_status"]
    assert HostCapabilities.model_validate(older).kdump_status is KdumpStatus.UNKNOWN
