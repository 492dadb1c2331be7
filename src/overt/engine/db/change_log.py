"""The change log: which VMs, hosts, jobs and audit events changed, written by the database.

Triggers on those tables add a row (kind, object id) for every insert, delete and change of
what the portal shows (a VM's name, status or host; a host's name or status; a job's or a
step's status; a new audit event), whoever writes it: the worker, the monitor (ORM or bulk
statements) or another engine process. A reader keeps a `Position` and reads only the rows
written since, so a poll costs what changed, not the size of the fleet.

Where a reader stands must not skip a change committed late. A sequence number is taken
when a row is written, not when it commits: on PostgreSQL a transaction holding seq 10 may
commit after another one's 11 was read. So on PostgreSQL the position is a snapshot
(`pg_current_snapshot()`), and each row carries its writer's transaction id: the rows new
to a reader are those whose transaction its last snapshot did not see (at or above its
xmax, or in progress then). SQLite has one writer at a time, holding the write lock from
its first write to its commit, so sequence order is commit order there and the position
is the last sequence number read.

Triggers are (re)installed after every migration (`install`): SQLite drops a table's
triggers when a migration rebuilds the table.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import ChangeRecord

# Rows older than this are pruned (the monitor's housekeeping); a reader that has not
# read for half as long reads everything again instead.
RETENTION = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class Trigger:
    """What one table's changes are logged as: `kind`, the column naming the object, and
    the columns whose change is news (inserts and deletes always are, unless `on_delete`
    is False)."""

    table: str
    kind: str
    key: str
    watched: tuple[str, ...]
    on_delete: bool = True


TRIGGERS = (
    Trigger("vms", "vm", "id", ("name", "status", "host_id")),
    Trigger("hosts", "host", "id", ("name", "status")),
    Trigger("jobs", "job", "id", ("status", "state", "vm_id", "host_id"), on_delete=False),
    Trigger("steps", "job", "job_id", ("status", "progress"), on_delete=False),
    Trigger("audit_events", "audit", "id", (), on_delete=False),
)


def _sqlite_ddl(trigger: Trigger) -> list[str]:
    name, table = f"{trigger.table}_change_log", trigger.table
    insert = "INSERT INTO change_log (kind, object_id) VALUES ('{kind}', {row}.{key});"
    new = insert.format(kind=trigger.kind, row="NEW", key=trigger.key)
    statements = [f"DROP TRIGGER IF EXISTS {name}_{op}" for op in ("insert", "update", "delete")]
    statements.append(f"CREATE TRIGGER {name}_insert AFTER INSERT ON {table} BEGIN {new} END")
    if trigger.watched:
        changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in trigger.watched)
        statements.append(f"CREATE TRIGGER {name}_update AFTER UPDATE OF "
                          f"{', '.join(trigger.watched)} ON {table} WHEN {changed} "
                          f"BEGIN {new} END")
    if trigger.on_delete:
        old = insert.format(kind=trigger.kind, row="OLD", key=trigger.key)
        statements.append(f"CREATE TRIGGER {name}_delete AFTER DELETE ON {table} "
                          f"BEGIN {old} END")
    return statements


def _postgresql_ddl(trigger: Trigger) -> list[str]:
    name, table = f"{trigger.table}_change_log", trigger.table
    function = f"overt_{name}"
    # The names are this module's constants, never input.
    statements = [
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ "  # noqa: S608
        "BEGIN "
        "INSERT INTO change_log (kind, object_id, xid) VALUES "
        f"('{trigger.kind}', (CASE WHEN TG_OP = 'DELETE' THEN OLD.{trigger.key} "
        f"ELSE NEW.{trigger.key} END)::text, pg_current_xact_id()::text::bigint); "
        "RETURN NULL; END $$",
    ]
    events = "INSERT OR DELETE" if trigger.on_delete else "INSERT"
    statements.append(f"CREATE OR REPLACE TRIGGER {name} AFTER {events} ON {table} "
                      f"FOR EACH ROW EXECUTE FUNCTION {function}()")
    if trigger.watched:
        changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in trigger.watched)
        statements.append(f"CREATE OR REPLACE TRIGGER {name}_update AFTER UPDATE OF "
                          f"{', '.join(trigger.watched)} ON {table} FOR EACH ROW "
                          f"WHEN ({changed}) EXECUTE FUNCTION {function}()")
    return statements


def install(connection: Connection) -> None:
    """Create (or replace) the triggers that fill the change log."""
    ddl = _postgresql_ddl if connection.dialect.name == "postgresql" else _sqlite_ddl
    for trigger in TRIGGERS:
        for statement in ddl(trigger):
            connection.execute(text(statement))


def uninstall(connection: Connection) -> None:
    for trigger in TRIGGERS:
        name = f"{trigger.table}_change_log"
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"DROP FUNCTION IF EXISTS overt_{name}() CASCADE"))
        else:
            for op in ("insert", "update", "delete"):
                connection.execute(text(f"DROP TRIGGER IF EXISTS {name}_{op}"))


@dataclass(frozen=True)
class Position:
    """Where a reader stands: the last sequence number read (SQLite) or the snapshot of
    its last read (PostgreSQL, `xmin:xmax:xip,...`)."""

    seq: int = 0
    snapshot: str | None = None


def _postgresql(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def position(session: AsyncSession) -> Position:
    """Where the log stands now: take it before reading the tables it covers, so that
    whatever it counts as read has been read (a change read twice is harmless)."""
    if _postgresql(session):
        snapshot = (await session.execute(text("SELECT pg_current_snapshot()::text"))
                    ).scalar_one()
        return Position(snapshot=str(snapshot))
    seq = (await session.execute(select(func.coalesce(func.max(ChangeRecord.seq), 0)))
           ).scalar_one()
    return Position(seq=int(seq))


async def changed_since(session: AsyncSession, since: Position
                        ) -> tuple[Position, dict[str, set[str]]]:
    """The objects changed since `since`, by kind (ids as text: as the database wrote
    them), and the position to read from next time."""
    now = await position(session)
    query = select(ChangeRecord.kind, ChangeRecord.object_id)
    if since.snapshot is not None:
        _xmin, xmax, in_progress = _parse(since.snapshot)
        unseen = ChangeRecord.xid >= xmax
        if in_progress:
            unseen = unseen | ChangeRecord.xid.in_(in_progress)
        query = query.where(unseen)
    else:
        query = query.where(ChangeRecord.seq > since.seq, ChangeRecord.seq <= now.seq)
    found: dict[str, set[str]] = defaultdict(set)
    for kind, object_id in await session.execute(query):
        found[kind].add(object_id)
    return now, found


def _parse(snapshot: str) -> tuple[int, int, list[int]]:
    xmin, xmax, in_progress = snapshot.split(":")
    return int(xmin), int(xmax), [int(xid) for xid in in_progress.split(",") if xid]


async def prune(session: AsyncSession, *, keep: dt.timedelta = RETENTION) -> int:
    """Forget changes older than `keep`: readers have read them long since."""
    cutoff = dt.datetime.now(dt.UTC) - keep
    result = await session.execute(delete(ChangeRecord).where(ChangeRecord.at < cutoff)
                                   .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def chunks(ids: Iterable[str], size: int = 500) -> Iterable[list[str]]:
    """Ids in lists short enough for one `IN (...)` each."""
    batch: list[str] = []
    for item in ids:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
