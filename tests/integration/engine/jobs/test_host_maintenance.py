"""Maintenance of a host that runs VMs, over the fast lane: the drain job migrates every VM
away (one migration job each, to the scheduler's choice) and the host goes to maintenance;
a VM that cannot move fails the drain with its name, the host serves as before, and no
VM is stopped."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from overt.engine.db.tables import AuditEvent, Host, Job, Lock, Step, User
from overt.engine.model.errors import Conflict
from overt.engine.model.status import HostStatus, VmStatus
from overt.engine.queries.lookup import Ref
from overt.engine.services import hosts, vms
from overt.engine.services.inputs import VmInput
from overt.protocol.host import VmState
from tests.support.loopback import LoopbackEngine

# The first host is the roomiest: the scheduler starts every VM there.
BIG, SMALL = 16384, 4096


async def _running(engine: LoopbackEngine, name: str) -> uuid.UUID:
    vm_id = await engine.add_vm(name)
    job = await engine.act(vms.start_vm, vm_id)
    assert (await engine.job(job.id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    return vm_id


async def _host_of(engine: LoopbackEngine, vm_id: uuid.UUID) -> str:
    vm = await engine.vm(vm_id)
    async with engine.session() as session:
        host = await session.get(Host, vm.host_id) if vm.host_id else None
    return host.name if host is not None else "nowhere"


async def _status(engine: LoopbackEngine, name: str) -> HostStatus:
    async with engine.session() as session:
        host = await session.get(Host, engine.hosts[name].host_id)
    assert host is not None
    return HostStatus(host.status)


async def _deactivate(engine: LoopbackEngine, name: str) -> Job:
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        assert user is not None
        job = await hosts.deactivate_host(session, engine.jobs, engine.hosts[name].host_id,
                                          user)
        assert job is not None, "a host running VMs is drained by a job"
        assert (await session.get(Host, engine.hosts[name].host_id)).status == \
            HostStatus.PREPARING_FOR_MAINTENANCE  # type: ignore[union-attr]
    return await engine.job(job.id)


async def _on_node(engine: LoopbackEngine, name: str) -> dict[str, VmState]:
    return {r.name: r.state for r in await engine.hosts[name].hypervisor.list_vms()}


async def _said(engine: LoopbackEngine, name: str) -> list[str]:
    async with engine.session() as session:
        return [e.description for e in (await session.execute(
            select(AuditEvent).where(AuditEvent.host_id == engine.hosts[name].host_id)
            .order_by(AuditEvent.id))).scalars()]


async def test_maintenance_migrates_every_vm_away_then_the_host_is_in_maintenance(
        engine: LoopbackEngine) -> None:
    await engine.add_host("h1", memory_mib=BIG)
    await engine.add_host("h2", memory_mib=SMALL)
    await engine.add_host("h3", memory_mib=SMALL)
    names = ("web", "db", "cache")
    vm_ids = [await _running(engine, name) for name in names]
    assert {await _host_of(engine, vm_id) for vm_id in vm_ids} == {"h1"}

    drain = await _deactivate(engine, "h1")

    assert drain.state == "done", drain.error
    assert await _status(engine, "h1") == HostStatus.MAINTENANCE
    assert await _on_node(engine, "h1") == {}
    for vm_id, name in zip(vm_ids, names, strict=True):
        vm = await engine.vm_reaches(vm_id, [VmStatus.UP])
        where = await _host_of(engine, vm.id)
        assert where in ("h2", "h3")
        assert (await _on_node(engine, where))[name] == VmState.RUNNING
    async with engine.session() as session:
        migrations = (await session.execute(select(Job).where(
            Job.action == "vm.migrate"))).scalars().all()
        steps = [s.description for s in (await session.execute(
            select(Step).where(Step.job_id == drain.id).order_by(Step.number))).scalars()]
        assert (await session.execute(select(Lock))).all() == []
    assert sorted(m.vm_id for m in migrations) == sorted(vm_ids)  # type: ignore[type-var]
    assert all(m.state == "done" for m in migrations)
    assert steps == ["Checking that every VM can leave host h1",
                     "Migrating the VMs of host h1 to other hosts"]
    said = await _said(engine, "h1")
    assert "Host h1 was switched to maintenance: its VMs run on other hosts" in said

    # Back from maintenance, the host runs VMs again.
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        await hosts.activate_host(session, engine.hosts["h1"].host_id, user)  # type: ignore[arg-type]
    await engine.settled()
    assert await _status(engine, "h1") == HostStatus.UP


async def test_a_pinned_vm_fails_the_drain_and_nothing_moves_or_stops(
        engine: LoopbackEngine) -> None:
    await engine.add_host("h1", memory_mib=BIG)
    await engine.add_host("h2", memory_mib=SMALL)
    web, db = await _running(engine, "web"), await _running(engine, "db")
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        await vms.update_vm(session, db, VmInput(placement_hosts=[Ref(name="h1")],
                                                 placement_affinity="pinned"), user)  # type: ignore[arg-type]
    with pytest.raises(Conflict, match="Cannot migrate VM db: VM db is pinned to its host "
                       r"\(placement policy affinity pinned\)"):
        await engine.act(vms.migrate_vm, db)

    drain = await _deactivate(engine, "h1")

    assert drain.state == "failed"
    assert "Cannot switch host h1 to maintenance: VM db is pinned to its host" in (
        drain.error or "")
    assert "VM web" not in (drain.error or "")
    assert await _status(engine, "h1") == HostStatus.UP
    for vm_id in (web, db):
        assert (await engine.vm(vm_id)).status == VmStatus.UP
        assert await _host_of(engine, vm_id) == "h1"
    assert await _on_node(engine, "h1") == {"web": VmState.RUNNING, "db": VmState.RUNNING}
    assert await _on_node(engine, "h2") == {}
    said = await _said(engine, "h1")
    assert any(s.startswith("Host h1 failed to switch to maintenance: Cannot switch host h1 "
                            "to maintenance: VM db is pinned") for s in said), said
    async with engine.session() as session:
        assert (await session.execute(select(Job).where(Job.action == "vm.migrate"))
                ).first() is None
        assert (await session.execute(select(Lock))).all() == []

    # Once the VM may move, the same host drains.
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        await vms.update_vm(session, db, VmInput(placement_hosts=[],
                                                 placement_affinity="migratable"), user)  # type: ignore[arg-type]
    assert (await _deactivate(engine, "h1")).state == "done"
    assert await _on_node(engine, "h2") == {"web": VmState.RUNNING, "db": VmState.RUNNING}


async def test_a_vm_with_no_host_to_go_to_fails_the_drain(engine: LoopbackEngine) -> None:
    await engine.add_host("h1", memory_mib=BIG)
    await engine.add_host("h2", memory_mib=SMALL)
    big = await engine.add_vm("big", memory_mib=8192)
    assert (await engine.job((await engine.act(vms.start_vm, big)).id)).state == "done"
    small = await _running(engine, "small")

    drain = await _deactivate(engine, "h1")

    assert drain.state == "failed"
    assert "VM big has no host to go to" in (drain.error or "")
    assert "h2: not enough memory" in (drain.error or "")
    assert await _status(engine, "h1") == HostStatus.UP
    for vm_id in (big, small):
        assert (await engine.vm(vm_id)).status == VmStatus.UP
        assert await _host_of(engine, vm_id) == "h1"


async def test_a_migration_that_fails_during_the_drain_leaves_its_vm_running_on_the_host(
        engine: LoopbackEngine) -> None:
    await engine.add_host("h1", memory_mib=BIG)
    await engine.add_host("h2", memory_mib=SMALL)
    web = await _running(engine, "web")
    engine.hosts["h2"].hypervisor.refuse_incoming = "the destination refused the VM"

    drain = await _deactivate(engine, "h1")

    assert drain.state == "failed"
    assert "VM web failed to migrate" in (drain.error or "")
    assert "the destination refused the VM" in (drain.error or "")
    await engine.settled()  # the host is up again
    assert (await engine.vm(web)).status == VmStatus.UP
    assert await _host_of(engine, web) == "h1"
    assert await _on_node(engine, "h1") == {"web": VmState.RUNNING}


async def test_the_placement_policy_hosts_bound_where_a_vm_starts_and_migrates(
        engine: LoopbackEngine) -> None:
    await engine.add_host("h1", memory_mib=BIG)
    await engine.add_host("h2", memory_mib=SMALL)
    await engine.add_host("h3", memory_mib=SMALL)
    vm_id = await engine.add_vm("web")
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        await vms.update_vm(session, vm_id, VmInput(placement_hosts=[Ref(name="h2"),
                                                                     Ref(name="h3")]), user)  # type: ignore[arg-type]
    assert (await engine.job((await engine.act(vms.start_vm, vm_id)).id)).state == "done"
    first = await _host_of(engine, (await engine.vm_reaches(vm_id, [VmStatus.UP])).id)
    assert first in ("h2", "h3")  # not h1, the roomiest
    with pytest.raises(Conflict, match="h1: not one of the VM's placement policy hosts"):
        await engine.act(vms.migrate_vm, vm_id, host=Ref(name="h1"))
    job = await engine.act(vms.migrate_vm, vm_id)
    assert (await engine.job(job.id)).state == "done"
    other = await _host_of(engine, (await engine.vm_reaches(vm_id, [VmStatus.UP])).id)
    assert other == ({"h2", "h3"} - {first}).pop()


async def test_a_removed_host_leaves_the_placement_policies_naming_it(
        engine: LoopbackEngine) -> None:
    h1 = await engine.add_host("h1")
    spare = uuid.uuid4()  # a host with no node nor storage: removable once in maintenance
    async with engine.session() as session:
        session.add(Host(id=spare, name="spare", address="192.0.2.9",
                         cluster_id=engine.cluster_id, status=HostStatus.UP.value,
                         memory_mib=SMALL))
    vm_id = await engine.add_vm("web")
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        assert user is not None
        await vms.update_vm(session, vm_id, VmInput(placement_hosts=[Ref(name="h1"),
                                                                     Ref(name="spare")]), user)
    assert (await engine.vm(vm_id)).placement_hosts == [str(h1.host_id), str(spare)]
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        assert user is not None
        assert await hosts.deactivate_host(session, engine.jobs, spare, user) is None
        await hosts.remove_host(session, spare, user)
    assert (await engine.vm(vm_id)).placement_hosts == [str(h1.host_id)]
