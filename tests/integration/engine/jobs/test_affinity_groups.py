"""Affinity groups over the fast lane: an enforcing rule filters the hosts a VM starts on,
migrates to or is drained to (and a move it forbids fails naming the group), a soft rule
only weighs them. Positive and negative, VM to VM and VM to host."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from overt.engine.db.tables import Host, Job, User
from overt.engine.model.errors import Conflict
from overt.engine.model.status import HostStatus, VmStatus
from overt.engine.queries.lookup import Ref
from overt.engine.services import affinity_groups, hosts, vms
from overt.engine.services.affinity_groups import AffinityGroupInput, RuleInput
from overt.engine.services.inputs import VmInput
from overt.protocol.host import VmState
from tests.support.loopback import LoopbackEngine

# The scheduler's own choice is the roomiest host: h1 unless a rule says otherwise.
BIG, SMALL = 16384, 4096


async def _started(engine: LoopbackEngine, name: str) -> uuid.UUID:
    vm_id = await engine.add_vm(name)
    await _start(engine, vm_id)
    return vm_id


async def _start(engine: LoopbackEngine, vm_id: uuid.UUID) -> None:
    assert (await engine.job((await engine.act(vms.start_vm, vm_id)).id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.UP])


async def _host_of(engine: LoopbackEngine, vm_id: uuid.UUID) -> str:
    vm = await engine.vm(vm_id)
    async with engine.session() as session:
        host = await session.get(Host, vm.host_id) if vm.host_id else None
    return host.name if host is not None else "nowhere"


async def _group(engine: LoopbackEngine, name: str, *, vm_ids: list[uuid.UUID],
                 host_names: list[str] | None = None, vms_rule: RuleInput | None = None,
                 hosts_rule: RuleInput | None = None) -> None:
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        assert user is not None
        await affinity_groups.add_group(session, engine.cluster_id, AffinityGroupInput(
            name=name, vms_rule=vms_rule, hosts_rule=hosts_rule,
            vms=[Ref(id=v) for v in vm_ids],
            hosts=[Ref(name=h) for h in host_names or []]), user)


def _rule(*, positive: bool, enforcing: bool) -> RuleInput:
    return RuleInput(enabled=True, positive=positive, enforcing=enforcing)


async def _migrate(engine: LoopbackEngine, vm_id: uuid.UUID, to: str | None = None) -> str:
    job = await engine.act(vms.migrate_vm, vm_id, host=Ref(name=to) if to else None)
    assert (await engine.job(job.id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    return await _host_of(engine, vm_id)


async def _drain(engine: LoopbackEngine, name: str) -> Job:
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        assert user is not None
        job = await hosts.deactivate_host(session, engine.jobs, engine.hosts[name].host_id,
                                          user)
        assert job is not None
    return await engine.job(job.id)


async def _host_status(engine: LoopbackEngine, name: str) -> HostStatus:
    async with engine.session() as session:
        host = await session.get(Host, engine.hosts[name].host_id)
    assert host is not None
    return HostStatus(host.status)


async def test_vm_rules_at_start_together_apart_and_refused(engine: LoopbackEngine) -> None:
    await engine.add_host("h1", memory_mib=SMALL)
    await engine.add_host("h2", memory_mib=BIG)
    db = await engine.add_vm("db")
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        await vms.update_vm(session, db, VmInput(placement_hosts=[Ref(name="h1")]), user)  # type: ignore[arg-type]
    await _start(engine, db)
    assert await _host_of(engine, db) == "h1"

    # Positive, enforcing: with db on the smaller host, not the roomiest.
    web = await engine.add_vm("web")
    await _group(engine, "together", vm_ids=[db, web],
                 vms_rule=_rule(positive=True, enforcing=True))
    await _start(engine, web)
    assert await _host_of(engine, web) == "h1"

    # Positive, soft: weighs more than free memory.
    cache = await engine.add_vm("cache")
    await _group(engine, "near", vm_ids=[db, cache], vms_rule=_rule(positive=True,
                                                                    enforcing=False))
    await _start(engine, cache)
    assert await _host_of(engine, cache) == "h1"

    # Negative, enforcing: apart from db and web; the second VM it keeps apart has no host.
    spare1, spare2 = await engine.add_vm("spare1"), await engine.add_vm("spare2")
    await _group(engine, "apart", vm_ids=[db, spare1, spare2],
                 vms_rule=_rule(positive=False, enforcing=True))
    await _start(engine, spare1)
    assert await _host_of(engine, spare1) == "h2"
    with pytest.raises(Conflict) as refused:
        await engine.act(vms.start_vm, spare2)
    message = str(refused.value)
    assert "Cannot run VM spare2. There is no host that satisfies current scheduling" in message
    assert ("h1: negative enforcing affinity group apart keeps the VM apart from VM(s) db, "
            "running on it") in message
    assert "h2: negative enforcing affinity group apart keeps the VM apart from VM(s) spare1" \
        in message
    assert (await engine.vm(spare2)).status == VmStatus.DOWN
    assert {r.name for r in await engine.hosts["h1"].hypervisor.list_vms()} == {
        "db", "web", "cache"}


async def test_vm_rules_at_migration(engine: LoopbackEngine) -> None:
    await engine.add_host("h1", memory_mib=BIG)
    await engine.add_host("h2", memory_mib=SMALL)
    await engine.add_host("h3", memory_mib=SMALL)
    db, web = await _started(engine, "db"), await _started(engine, "web")
    assert {await _host_of(engine, db), await _host_of(engine, web)} == {"h1"}
    await _group(engine, "together", vm_ids=[db, web],
                 vms_rule=_rule(positive=True, enforcing=True))

    # Leaving db's host breaks the group, wherever the scheduler looks.
    with pytest.raises(Conflict, match="h2: positive enforcing affinity group together keeps "
                       r"the VM with VM\(s\) db, running elsewhere"):
        await engine.act(vms.migrate_vm, web)
    with pytest.raises(Conflict, match="h3: positive enforcing affinity group together"):
        await engine.act(vms.migrate_vm, web, host=Ref(name="h3"))
    assert (await engine.vm(web)).status == VmStatus.UP
    assert await _host_of(engine, web) == "h1"

    # Negative: the scheduler's choice avoids the host of the VM kept apart.
    batch = await _started(engine, "batch")
    assert await _migrate(engine, batch, "h2") == "h2"
    await _group(engine, "apart", vm_ids=[batch, db],
                 vms_rule=_rule(positive=False, enforcing=True))
    with pytest.raises(Conflict, match="h1: negative enforcing affinity group apart keeps the "
                       r"VM apart from VM\(s\) db, running on it"):
        await engine.act(vms.migrate_vm, batch, host=Ref(name="h1"))
    assert await _migrate(engine, batch) == "h3"  # not h1, the roomiest


async def test_host_rules_at_start_and_migration(engine: LoopbackEngine) -> None:
    await engine.add_host("h1", memory_mib=BIG)
    await engine.add_host("h2", memory_mib=SMALL)
    await engine.add_host("h3", memory_mib=SMALL)
    web = await engine.add_vm("web")
    await _group(engine, "on-h2-h3", vm_ids=[web], host_names=["h2", "h3"],
                 hosts_rule=_rule(positive=True, enforcing=True))
    await _start(engine, web)
    first = await _host_of(engine, web)
    assert first in ("h2", "h3")
    with pytest.raises(Conflict, match="h1: positive enforcing affinity group on-h2-h3 runs "
                       "the VM only on the group's hosts"):
        await engine.act(vms.migrate_vm, web, host=Ref(name="h1"))
    assert await _migrate(engine, web) == ({"h2", "h3"} - {first}).pop()

    # Negative: off h1 (the roomiest); soft: h2 is preferred to h3 only by the rule.
    db = await engine.add_vm("db")
    await _group(engine, "off-h1", vm_ids=[db], host_names=["h1"],
                 hosts_rule=_rule(positive=False, enforcing=True))
    await _group(engine, "rather-not-h3", vm_ids=[db], host_names=["h3"],
                 hosts_rule=_rule(positive=False, enforcing=False))
    await _start(engine, db)
    assert await _host_of(engine, db) == "h2"
    with pytest.raises(Conflict, match="h1: negative enforcing affinity group off-h1 keeps "
                       "the VM off this host"):
        await engine.act(vms.migrate_vm, db, host=Ref(name="h1"))
    assert await _migrate(engine, db, "h3") == "h3"  # a soft rule does not forbid


async def test_a_drain_keeps_positive_groups_together(engine: LoopbackEngine) -> None:
    await engine.add_host("h1", memory_mib=BIG)
    await engine.add_host("h2", memory_mib=SMALL)
    await engine.add_host("h3", memory_mib=SMALL)
    db, web = await _started(engine, "db"), await _started(engine, "web")
    other = await _started(engine, "other")
    await _group(engine, "together", vm_ids=[db, web],
                 vms_rule=_rule(positive=True, enforcing=True))
    await _group(engine, "apart", vm_ids=[db, other],
                 vms_rule=_rule(positive=False, enforcing=False))

    drain = await _drain(engine, "h1")

    assert drain.state == "done", drain.error
    assert await _host_status(engine, "h1") == HostStatus.MAINTENANCE
    where = {name: await _host_of(engine, vm_id)
             for name, vm_id in (("db", db), ("web", web), ("other", other))}
    assert where["db"] == where["web"] != "h1"
    assert where["other"] not in (where["db"], "h1")  # the soft negative rule


async def test_a_drain_a_hard_rule_forbids_fails_and_nothing_moves(
        engine: LoopbackEngine) -> None:
    await engine.add_host("h1", memory_mib=BIG)
    await engine.add_host("h2", memory_mib=SMALL)
    db, web = await _started(engine, "db"), await _started(engine, "web")
    assert await _migrate(engine, web, "h2") == "h2"
    await _group(engine, "apart", vm_ids=[db, web],
                 vms_rule=_rule(positive=False, enforcing=True))

    drain = await _drain(engine, "h1")

    assert drain.state == "failed"
    error = drain.error or ""
    assert "Cannot switch host h1 to maintenance: VM db has no host to go to" in error
    assert ("h2: negative enforcing affinity group apart keeps the VM apart from VM(s) web, "
            "running on it") in error
    assert "No VM was moved or stopped" in error
    await engine.settled()
    assert await _host_status(engine, "h1") == HostStatus.UP
    assert [(r.name, r.state) for r in await engine.hosts["h1"].hypervisor.list_vms()] == [
        ("db", VmState.RUNNING)]
    async with engine.session() as session:
        migrations = (await session.execute(select(Job).where(Job.action == "vm.migrate"))
                      ).scalars().all()
    assert len(migrations) == 1  # web's, before the group; none by the drain

    # A VM-to-host rule holds a VM on its host the same way.
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        assert user is not None
        for group in await affinity_groups.list_groups(session, engine.cluster_id):
            await affinity_groups.remove_group(session, engine.cluster_id, group.id, user)
    await _group(engine, "only-h1", vm_ids=[db], host_names=["h1"],
                 hosts_rule=_rule(positive=True, enforcing=True))
    drain = await _drain(engine, "h1")
    assert drain.state == "failed"
    assert ("h2: positive enforcing affinity group only-h1 runs the VM only on the group's "
            "hosts") in (drain.error or "")
    await engine.settled()
    assert (await engine.vm(db)).status == VmStatus.UP
    assert await _host_of(engine, db) == "h1"


async def test_a_drain_checks_a_positive_group_fits_together_before_anything_moves(
        engine: LoopbackEngine) -> None:
    await engine.add_host("h1", memory_mib=BIG)
    await engine.add_host("h2", memory_mib=SMALL)
    await engine.add_host("h3", memory_mib=SMALL)
    pair = []
    for name in ("db", "web"):  # each fits h2 or h3 alone, not both together
        vm_id = await engine.add_vm(name, memory_mib=3072)
        await _start(engine, vm_id)
        pair.append(vm_id)
    await _group(engine, "together", vm_ids=pair, vms_rule=_rule(positive=True, enforcing=True))

    drain = await _drain(engine, "h1")

    assert drain.state == "failed"
    error = drain.error or ""
    assert "VM web has no host to go to" in error
    assert "positive enforcing affinity group together keeps the VM with VM(s) db" in error
    assert "not enough memory" in error
    assert error.count("has no host to go to") == 1  # db could go first: only web is named
    await engine.settled()
    for vm_id in pair:
        assert (await engine.vm(vm_id)).status == VmStatus.UP
        assert await _host_of(engine, vm_id) == "h1"
        assert (await engine.vm(vm_id)).migration_host_id is None  # the trial left nothing
    assert {r.name for r in await engine.hosts["h1"].hypervisor.list_vms()} == {"db", "web"}
    async with engine.session() as session:
        assert (await session.execute(select(Job).where(Job.action == "vm.migrate"))
                ).first() is None
