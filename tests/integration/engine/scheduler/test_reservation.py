"""Placement happens once, when a start is submitted, and reserves the chosen host."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import delete, select, update

from overt.engine.db import migrate
from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID, seed
from overt.engine.db.tables import Cluster, Host, Job, Lock, User, Vm
from overt.engine.model.errors import NoHostAvailable
from overt.engine.model.status import HostStatus, VmStatus
from overt.engine.queries import lookup
from overt.engine.services import vms
from overt.engine.services.jobs import JobSubmitter
from tests.support.loopback import LoopbackEngine

REPEATS = 50


# A hundred jobs: seconds on an idle machine, more on a busy one (each SQL statement is
# a round trip to SQLite's thread), so more than the lane's usual 30 s are allowed.
@pytest.mark.timeout(180)
async def test_two_starts_for_the_last_room_on_a_host_one_runs_one_is_refused(
        engine: LoopbackEngine) -> None:
    node = await engine.add_host("only", memory_mib=1024)  # room for one of the two
    pair = [await engine.add_vm("a", memory_mib=768), await engine.add_vm("b", memory_mib=768)]
    for _round in range(REPEATS):
        outcomes = await asyncio.gather(*(engine.act(vms.start_vm, vm_id) for vm_id in pair),
                                        return_exceptions=True)
        started = [(vm_id, o) for vm_id, o in zip(pair, outcomes, strict=True)
                   if isinstance(o, Job)]
        refused = [(vm_id, o) for vm_id, o in zip(pair, outcomes, strict=True)
                   if isinstance(o, NoHostAvailable)]
        assert len(started) == 1 and len(refused) == 1, outcomes
        (winner, job), (loser, refusal) = started[0], refused[0]
        assert "only: not enough memory (256 MiB free of 1024 MiB" in refusal.detail
        assert "the VM needs 768 MiB" in refusal.detail
        assert (await engine.job(job.id)).state == "done"
        assert (await engine.vm_reaches(winner, [VmStatus.UP])).host_id == node.host_id
        other = await engine.vm(loser)
        assert (other.status, other.host_id) == (VmStatus.DOWN.value, None)
        assert [r.vm_id for r in await node.hypervisor.list_vms()] == [winner]
        await engine.job((await engine.act(vms.stop_vm, winner)).id)
        await engine.vm_reaches(winner, [VmStatus.DOWN])
    async with engine.session() as session:
        jobs = (await session.execute(select(Job.state, Job.action))).all()
    assert sorted(set(jobs)) == [("done", "vm.start"), ("done", "vm.stop")]
    assert len(jobs) == 2 * REPEATS


async def test_the_reservation_holds_the_host_before_the_job_runs(
        engine: LoopbackEngine) -> None:
    node = await engine.add_host("only", memory_mib=1024)
    first = await engine.add_vm("a", memory_mib=768)
    second = await engine.add_vm("b", memory_mib=768)
    await engine.worker.stop()  # jobs wait in the queue: only the reservation counts
    job = await engine.act(vms.start_vm, first)
    vm = await engine.vm(first)
    assert (vm.status, vm.host_id) == (VmStatus.WAIT_FOR_LAUNCH.value, node.host_id)
    async with engine.session() as session:
        assert (await session.get(Job, job.id)).host_id == node.host_id  # type: ignore[union-attr]
    with pytest.raises(NoHostAvailable, match="not enough memory"):
        await engine.act(vms.start_vm, second)
    assert (await engine.vm(second)).status == VmStatus.DOWN.value


async def test_a_start_the_node_refuses_releases_its_reservation(
        engine: LoopbackEngine) -> None:
    """The scheduler believes the host has room; the node knows better (memory taken by
    something else): the job fails with the node's reason and the host is free again."""
    node = await engine.add_host("only", memory_mib=1024)
    vm_id = await engine.add_vm("a", memory_mib=768)
    node.hypervisor._memory_mib = 512  # the host lost memory the engine has not heard of
    job = await engine.job((await engine.act(vms.start_vm, vm_id)).id)
    assert job.state == "failed" and "has not 768 MiB free" in (job.error or "")
    vm = await engine.vm(vm_id)
    assert (vm.status, vm.host_id) == (VmStatus.DOWN.value, None)
    node.hypervisor._memory_mib = 1024
    assert (await engine.job((await engine.act(vms.start_vm, vm_id)).id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.UP])


@pytest.mark.pg
async def test_concurrent_submissions_never_reserve_the_same_room(fresh_postgres_url: str
                                                                  ) -> None:
    """Two API processes submit starts at the same moment (PostgreSQL: several processes
    share one database; SQLite serves one engine process, whose transactions take turns):
    the host's row lock makes the second see the first's reservation."""
    db_url = fresh_postgres_url
    migrate.upgrade(db_url)
    first_db, second_db = Database(db_url), Database(db_url)
    await seed(first_db)
    async with first_db.transaction() as session:
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert cluster is not None
        user = User(user_name="admin@internal", administrator=True)
        host = Host(name="only", address="127.0.0.1", cluster_id=cluster.id,
                    status=HostStatus.UP.value, host_uuid=uuid.uuid4(), memory_mib=1024)
        pair = [Vm(id=uuid.uuid4(), name=name, cluster_id=cluster.id,
                   template_id=BLANK_TEMPLATE_ID, memory_mib=768) for name in ("a", "b")]
        session.add_all([user, host, *pair])
    ids = [vm.id for vm in pair]

    async def start(db: Database, vm_id: uuid.UUID) -> Job:
        async with db.transaction() as session:
            return await vms.start_vm(session, JobSubmitter(), vm_id,
                                      await lookup.get(session, User, user.id))
    try:
        for _round in range(10):
            outcomes = await asyncio.gather(start(first_db, ids[0]), start(second_db, ids[1]),
                                            return_exceptions=True)
            assert sorted(type(o).__name__ for o in outcomes) == ["Job", "NoHostAvailable"], \
                outcomes
            async with first_db.transaction() as session:
                placed = (await session.execute(select(Vm.name).where(
                    Vm.host_id == host.id, Vm.status == VmStatus.WAIT_FOR_LAUNCH.value)
                )).scalars().all()
                assert len(placed) == 1
                await session.execute(delete(Lock))
                await session.execute(delete(Job))
                await session.execute(update(Vm).values(status=VmStatus.DOWN.value,
                                                        host_id=None))
            ids.reverse()
    finally:
        await first_db.dispose()
        await second_db.dispose()
