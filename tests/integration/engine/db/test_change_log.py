"""The change log: every write of what the portal shows is logged by the database itself
(ORM or bulk statement, any process), nothing else is, a reader gets each change after
its position (also one committed after a later one was read), and old rows are pruned."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import select, update

from overt.engine import audit
from overt.engine.db import change_log
from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import ChangeRecord, Cluster, Vm, utcnow
from overt.engine.model.status import VmStatus


async def _add_vm(db: Database, name: str) -> uuid.UUID:
    async with db.transaction() as session:
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert cluster is not None
        vm = Vm(id=uuid.uuid4(), name=name, cluster_id=cluster.id,
                template_id=BLANK_TEMPLATE_ID, memory_mib=256)
        session.add(vm)
    return vm.id


def _ids(found: dict[str, set[str]], kind: str) -> set[uuid.UUID]:
    return {uuid.UUID(x) for x in found.get(kind, set())}


async def test_writes_of_what_the_portal_shows_are_logged_and_nothing_else(db: Database
                                                                           ) -> None:
    async with db.transaction() as session:
        start = await change_log.position(session)
    vm_id = await _add_vm(db, "logged-1")
    async with db.transaction() as session:
        at, found = await change_log.changed_since(session, start)
    assert _ids(found, "vm") == {vm_id}
    # A bulk statement (as the monitor writes) is logged as an ORM write is.
    async with db.transaction() as session:
        await session.execute(update(Vm).where(Vm.id == vm_id).values(status=VmStatus.UP))
    async with db.transaction() as session:
        at, found = await change_log.changed_since(session, at)
    assert _ids(found, "vm") == {vm_id} and set(found) == {"vm"}
    # Writing what the portal does not show, or the same status again, is no news.
    async with db.transaction() as session:
        await session.execute(update(Vm).where(Vm.id == vm_id).values(
            status=VmStatus.UP, cpu_percent=12.5, memory_used_mib=100))
    async with db.transaction() as session:
        at, found = await change_log.changed_since(session, at)
    assert found == {}
    async with db.transaction() as session:
        audit.record(session, "VM logged-1 is up", vm_id=vm_id)
        found_vm = await session.get(Vm, vm_id)
        await session.delete(found_vm)
    async with db.transaction() as session:
        _, found = await change_log.changed_since(session, at)
    assert _ids(found, "vm") == {vm_id} and len(found["audit"]) == 1


@pytest.mark.pg
async def test_a_change_committed_after_a_later_one_was_read_is_not_skipped(
        fresh_postgres_url: str) -> None:
    from overt.engine.db import migrate
    from overt.engine.db.seed import seed
    migrate.upgrade(fresh_postgres_url)
    db, other = Database(fresh_postgres_url), Database(fresh_postgres_url)
    try:
        await seed(db)
        early, late = await _add_vm(db, "early"), await _add_vm(db, "late")
        async with db.transaction() as session:
            start = await change_log.position(session)
        # The early transaction logs its change first (the lower sequence number) but
        # commits only after the late one has committed and a reader has read past it.
        async with other.transaction() as slow:
            await slow.execute(update(Vm).where(Vm.id == early).values(status=VmStatus.UP))
            async with db.transaction() as session:
                await session.execute(update(Vm).where(Vm.id == late)
                                      .values(status=VmStatus.UP))
            async with db.transaction() as session:
                at, found = await change_log.changed_since(session, start)
            assert _ids(found, "vm") == {late}
        async with db.transaction() as session:
            seqs = dict((await session.execute(select(ChangeRecord.object_id, ChangeRecord.seq)
                                                .where(ChangeRecord.seq > 0))).all())
            at, found = await change_log.changed_since(session, at)
        assert seqs[str(early)] < seqs[str(late)]  # the sequence alone would skip it
        assert _ids(found, "vm") == {early}
        async with db.transaction() as session:
            _, found = await change_log.changed_since(session, at)
        assert found == {}
    finally:
        await db.dispose()
        await other.dispose()


async def test_old_changes_are_pruned_recent_ones_kept(db: Database) -> None:
    vm_id = await _add_vm(db, "pruned-1")
    async with db.transaction() as session:
        await session.execute(update(ChangeRecord).values(
            at=utcnow() - change_log.RETENTION - dt.timedelta(minutes=1)))
    await _add_vm(db, "kept-1")
    async with db.transaction() as session:
        assert await change_log.prune(session) >= 1
    async with db.transaction() as session:
        left = set((await session.execute(select(ChangeRecord.object_id))).scalars())
    assert left and all(uuid.UUID(x) != vm_id for x in left)


@pytest.mark.pg
def test_engine_parts_starting_at_once_on_a_migrated_database_all_start(
        fresh_postgres_url: str) -> None:
    """Each engine part brings the schema up to date as it starts; six parts start at once
    against one PostgreSQL (the engine's HA deployment). None may fail: a start with
    nothing to migrate writes nothing (replacing the change log's functions concurrently
    made PostgreSQL refuse all but one: "tuple concurrently updated")."""
    import subprocess
    import sys

    from overt.engine.db import migrate
    migrate.upgrade(fresh_postgres_url)
    code = ("import sys\nfrom overt.engine.db import migrate\n"
            "for _ in range(5):\n    migrate.upgrade(sys.argv[1])\n")
    parts = [subprocess.Popen([sys.executable, "-c", code, fresh_postgres_url],
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    failed = [err for part in parts if (err := part.communicate(timeout=120)[1])
              and part.returncode != 0]
    assert failed == []
