"""A node reports VMs of another host: it must not move them, stop them or feed their stats."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from overt.engine import audit
from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import AuditEvent, Cluster, Host, StatsSample, Vm
from overt.engine.model.status import HostStatus, VmStatus
from overt.engine.monitor.apply import Gaps, Outcome, apply_event
from overt.engine.monitor.stats_writer import StatsWriter
from overt.protocol import EventEnvelope
from overt.protocol.boots import new_boot_id
from overt.protocol.events import HostStateReport, VmLifecycle
from overt.protocol.events import StatsSample as StatsEvent
from overt.protocol.host import HostState, HostStats, VmState, VmStats, VmStatusReport


async def _host(db: Database, name: str) -> tuple[uuid.UUID, uuid.UUID]:
    host_uuid = uuid.uuid4()
    host_id = uuid.uuid4()
    async with db.transaction() as session:
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert cluster is not None
        session.add(Host(id=host_id, name=name, address="192.0.2.1", cluster_id=cluster.id,
                         status=HostStatus.UP.value, host_uuid=host_uuid))
    return host_id, host_uuid


async def _vm_on(db: Database, host_id: uuid.UUID | None, status: VmStatus) -> uuid.UUID:
    async with db.transaction() as session:
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert cluster is not None
        vm = Vm(id=uuid.uuid4(), name=f"vm-{uuid.uuid4().hex[:6]}", cluster_id=cluster.id,
                template_id=BLANK_TEMPLATE_ID, memory_mib=256, status=status.value,
                host_id=host_id, vnc_port=5900 if host_id else None)
        session.add(vm)
        return vm.id


async def _report(db: Database, host_uuid: uuid.UUID, boot: uuid.UUID, seq: int,
                  vm_id: uuid.UUID, state: VmState, vnc_port: int | None = None) -> Outcome:
    report = VmStatusReport(vm_id=vm_id, name="whatever", state=state, vnc_port=vnc_port)
    event = VmLifecycle(vm=report)
    async with db.transaction() as session:
        return await apply_event(session, EventEnvelope(host_uuid=host_uuid, boot_id=boot,
                                                        seq=seq, event=event), gaps=Gaps.RESYNC)


async def _vm(db: Database, vm_id: uuid.UUID) -> Vm:
    async with db.transaction() as session:
        vm = await session.get(Vm, vm_id)
        assert vm is not None
        return vm


async def _refusals(db: Database) -> list[str]:
    async with db.transaction() as session:
        return list((await session.execute(select(AuditEvent.description).where(
            AuditEvent.code == audit.NODE_REPORT_REFUSED))).scalars())


async def test_a_node_cannot_take_over_or_stop_a_vm_running_on_another_host(db: Database
                                                                             ) -> None:
    host_a, _uuid_a = await _host(db, "host-a")
    _host_b, uuid_b = await _host(db, "host-b")
    vm_id = await _vm_on(db, host_a, VmStatus.UP)
    boot = new_boot_id()
    await _report(db, uuid_b, boot, 1, vm_id, VmState.RUNNING, vnc_port=31337)
    vm = await _vm(db, vm_id)
    assert (vm.host_id, vm.status, vm.vnc_port) == (host_a, VmStatus.UP.value, 5900)
    await _report(db, uuid_b, boot, 2, vm_id, VmState.SHUTOFF)
    vm = await _vm(db, vm_id)
    assert (vm.host_id, vm.status) == (host_a, VmStatus.UP.value)
    refused = await _refusals(db)
    assert refused and "host-b" in refused[0] and vm.name in refused[0]


async def test_a_node_cannot_claim_a_vm_that_is_down_in_a_full_report(db: Database) -> None:
    _host_b, uuid_b = await _host(db, "host-b")
    vm_id = await _vm_on(db, None, VmStatus.DOWN)
    boot = new_boot_id()
    state = HostState(host_uuid=uuid_b, free_memory_mib=1024, seq=0, boot_id=boot, vms=(
        VmStatusReport(vm_id=vm_id, name="x", state=VmState.RUNNING, vnc_port=22),))
    async with db.transaction() as session:
        await apply_event(session, EventEnvelope(host_uuid=uuid_b, boot_id=boot, seq=1,
                                                 event=HostStateReport(state=state)))
    vm = await _vm(db, vm_id)
    assert (vm.host_id, vm.status, vm.vnc_port) == (None, VmStatus.DOWN.value, None)
    assert await _refusals(db)


async def test_a_node_cannot_write_stats_of_a_vm_on_another_host(db: Database) -> None:
    host_a, _uuid_a = await _host(db, "host-a")
    _host_b, uuid_b = await _host(db, "host-b")
    vm_id = await _vm_on(db, host_a, VmStatus.UP)
    writer = StatsWriter(db)
    sample = StatsEvent(interval_s=15, host=HostStats(
        cpu_percent=1, memory_total_mib=1000, memory_used_mib=10, memory_free_mib=990),
        vms=(VmStats(vm_id=vm_id, name="x", cpu_percent=99, cpu_time_ns=1, memory_mib=1,
                     net_rx_bytes=10**12),))
    writer.add(EventEnvelope(host_uuid=uuid_b, boot_id=new_boot_id(), seq=None, event=sample))
    await writer.flush()
    async with db.transaction() as session:
        vm_samples = (await session.execute(select(StatsSample).where(
            StatsSample.subject_id == vm_id))).scalars().all()
        vm = await session.get(Vm, vm_id)
        assert vm is not None
    assert vm_samples == [] and vm.net_rx_bytes != 10**12
    assert await _refusals(db)
