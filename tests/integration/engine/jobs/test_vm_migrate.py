"""Live migration over the fast lane: the checks, the job's handover and its compensation."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from overt.engine.db.tables import AuditEvent, Cluster, Host, Lock, Step, User
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.model.status import HostStatus, VmStatus
from overt.engine.queries.lookup import Ref
from overt.engine.scheduler.loads import host_loads
from overt.engine.services import vms
from overt.node.simulated.hypervisor import SimulatedTimings
from overt.protocol.host import VmState
from tests.support.loopback import LoopbackEngine


async def _names(engine: LoopbackEngine, host: str) -> dict[str, VmState]:
    return {r.name: r.state for r in await engine.hosts[host].hypervisor.list_vms()}


async def _running_vm(engine: LoopbackEngine, name: str = "web") -> uuid.UUID:
    vm_id = await engine.add_vm(name)
    job = await engine.act(vms.start_vm, vm_id)
    assert (await engine.job(job.id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    return vm_id


async def _where(engine: LoopbackEngine, vm_id: uuid.UUID) -> str:
    vm = await engine.vm(vm_id)
    async with engine.session() as session:
        host = await session.get(Host, vm.host_id) if vm.host_id else None
    return host.name if host is not None else "nowhere"


async def test_a_vm_migrates_to_the_host_asked_for_and_back(engine: LoopbackEngine) -> None:
    h1, h2 = await engine.add_host("h1"), await engine.add_host("h2")
    vm_id = await _running_vm(engine)
    source = await _where(engine, vm_id)
    target, target_node = ("h2", h2) if source == "h1" else ("h1", h1)

    job = await engine.act(vms.migrate_vm, vm_id, host=Ref(name=target))
    assert (await engine.vm(vm_id)).status == VmStatus.MIGRATING
    assert (await engine.job(job.id)).state == "done"
    vm = await engine.vm_reaches(vm_id, [VmStatus.UP])
    assert vm.host_id == target_node.host_id and vm.migration_host_id is None
    assert await _names(engine, target) == {"web": VmState.RUNNING}
    assert await _names(engine, source) == {}

    job = await engine.act(vms.migrate_vm, vm_id, host=Ref(name=source))
    assert (await engine.job(job.id)).state == "done"
    assert await _where(engine, (await engine.vm_reaches(vm_id, [VmStatus.UP])).id) == source
    assert await _names(engine, source) == {"web": VmState.RUNNING}
    assert await _names(engine, target) == {}
    await engine.settled()
    async with engine.session() as session:
        assert (await session.execute(select(Lock))).all() == []
        said = [e.description for e in (await session.execute(
            select(AuditEvent).where(AuditEvent.vm_id == vm_id).order_by(AuditEvent.id)
        )).scalars()]
        steps = [s.description for s in (await session.execute(
            select(Step).where(Step.job_id == job.id))).scalars()]
    # The simulated hypervisor's figures: no time, 40 ms down, 1.5 times the VM's memory.
    figures = "total 0.0 s, downtime 40 ms, 384.0 MiB transferred"
    assert said[-4:] == [
        f"Migration of VM web from host {source} to host {target} was started",
        f"VM web migrated from host {source} to host {target} ({figures})",
        f"Migration of VM web from host {target} to host {source} was started",
        f"VM web migrated from host {target} to host {source} ({figures})"]
    assert steps == [f"Migrating VM web from host {target} to host {source}: {figures}"]


async def test_the_scheduler_chooses_another_host_of_the_cluster(engine: LoopbackEngine) -> None:
    await engine.add_host("h1")
    await engine.add_host("h2")
    vm_id = await _running_vm(engine)
    source = await _where(engine, vm_id)
    job = await engine.act(vms.migrate_vm, vm_id)
    assert (await engine.job(job.id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    assert await _where(engine, vm_id) not in (source, "nowhere")


async def test_the_destination_is_reserved_while_the_vm_migrates(engine: LoopbackEngine) -> None:
    await engine.add_host("h1")
    await engine.add_host("h2")
    vm_id = await engine.add_vm("web", memory_mib=1024)
    job = await engine.act(vms.start_vm, vm_id)
    assert (await engine.job(job.id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    other = "h2" if await _where(engine, vm_id) == "h1" else "h1"

    class Undo(Exception):
        pass
    loads: dict[str, int] = {}
    with pytest.raises(Undo):  # the submission is rolled back: no job runs
        async with engine.session() as session:
            user = await session.get(User, engine.user_id)
            await vms.migrate_vm(session, engine.jobs, vm_id, user, host=Ref(name=other))
            await session.flush()
            loads = {load.name: load.committed_mib
                     for load in await host_loads(session, engine.cluster_id)}
            raise Undo
    assert loads == {"h1": 1024, "h2": 1024}  # counted on its source and its destination
    assert (await engine.vm(vm_id)).status == VmStatus.UP


async def test_bad_destinations_are_refused_and_change_nothing(engine: LoopbackEngine) -> None:
    await engine.add_host("h1")
    await engine.add_host("h2")
    async with engine.session() as session:
        other = Cluster(name="elsewhere", data_center_id=(await session.get(
            Cluster, engine.cluster_id)).data_center_id)  # type: ignore[union-attr]
        session.add(other)
        await session.flush()
        session.add(Host(name="far", address="127.0.0.2", cluster_id=other.id,
                         status=HostStatus.UP.value, host_uuid=uuid.uuid4(), memory_mib=4096))
        session.add(Host(name="resting", address="127.0.0.3", cluster_id=engine.cluster_id,
                         status=HostStatus.MAINTENANCE.value, host_uuid=uuid.uuid4(),
                         memory_mib=4096))
    down_vm = await engine.add_vm("idle")
    with pytest.raises(Conflict, match="Cannot migrate VM idle: the VM is down"):
        await engine.act(vms.migrate_vm, down_vm, host=Ref(name="h2"))
    vm_id = await _running_vm(engine)
    own = await _where(engine, vm_id)
    refusals = {
        own: f"it already runs on host {own}",
        "far": "the host is in another cluster than the VM",
        "resting": "the host is maintenance",
    }
    for target, why in refusals.items():
        with pytest.raises(Conflict, match=why):
            await engine.act(vms.migrate_vm, vm_id, host=Ref(name=target))
    with pytest.raises(InvalidInput, match="the destination host 'nosuch' does not exist"):
        await engine.act(vms.migrate_vm, vm_id, host=Ref(name="nosuch"))
    vm = await engine.vm(vm_id)
    assert vm.status == VmStatus.UP and vm.migration_host_id is None
    assert await _where(engine, vm_id) == own
    async with engine.session() as session:
        assert (await session.execute(select(Lock))).all() == []


async def test_a_failed_migration_leaves_the_vm_up_on_its_source(engine: LoopbackEngine) -> None:
    await engine.add_host("h1")
    await engine.add_host("h2")
    vm_id = await _running_vm(engine)
    source = await _where(engine, vm_id)
    target = "h2" if source == "h1" else "h1"
    engine.hosts[target].hypervisor.refuse_incoming = "the destination refused the VM"

    job = await engine.act(vms.migrate_vm, vm_id, host=Ref(name=target))
    ended = await engine.job(job.id)
    assert ended.state == "failed"
    assert "the destination refused the VM" in (ended.error or "")
    await engine.settled()
    vm = await engine.vm(vm_id)
    assert vm.status == VmStatus.UP and vm.migration_host_id is None
    assert await _where(engine, vm_id) == source
    assert await _names(engine, source) == {"web": VmState.RUNNING}
    assert await _names(engine, target) == {}
    async with engine.session() as session:
        assert (await session.execute(select(Lock))).all() == []
        said = [e.description for e in (await session.execute(
            select(AuditEvent).where(AuditEvent.vm_id == vm_id).order_by(AuditEvent.id)
        )).scalars()]
    assert any(s.startswith("Migration of VM web failed:") and "refused" in s for s in said)


async def test_a_cancelled_migration_leaves_the_vm_up_on_its_source(
        engine: LoopbackEngine) -> None:
    await engine.add_host("h1")
    await engine.add_host("h2")
    vm_id = await _running_vm(engine)
    source = await _where(engine, vm_id)
    target = "h2" if source == "h1" else "h1"
    with pytest.raises(Conflict, match="Cannot cancel the migration of VM web: the VM is not "
                       "migrating"):
        await engine.act(vms.cancel_migration, vm_id)
    engine.hosts[source].hypervisor.timings = SimulatedTimings(migrate_s=60)

    migration = await engine.act(vms.migrate_vm, vm_id, host=Ref(name=target))

    async def in_flight() -> bool:
        return vm_id in engine.hosts[source].hypervisor.migrating()
    await engine.eventually(in_flight, what="the migration to reach the source's node")
    assert (await engine.vm(vm_id)).status == VmStatus.MIGRATING
    cancel = await engine.act(vms.cancel_migration, vm_id)
    assert (await engine.job(cancel.id)).state == "done"
    ended = await engine.job(migration.id)
    assert ended.state == "failed" and "was cancelled" in (ended.error or "")
    await engine.settled()
    vm = await engine.vm(vm_id)
    assert vm.status == VmStatus.UP and vm.migration_host_id is None
    assert await _where(engine, vm_id) == source
    assert await _names(engine, source) == {"web": VmState.RUNNING}
    assert await _names(engine, target) == {}
