"""Many rows in one statement: the monitor writes a fleet's samples a second.

On PostgreSQL a batch of rows travels as one array per column (`unnest`), so a
thousand rows cost one statement, one round trip and almost no Python per row
(an `executemany` costs the driver and SQLAlchemy work for every row). Other
databases (SQLite: in process, no round trips) take Core's `executemany`.
Rows are dicts with the same keys; values of the columns' Python types.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, any_, bindparam, insert, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def table_of(entity: type[Any]) -> Table:
    """A mapped class's table, typed as the Core table it is."""
    return cast(Table, entity.__table__)


async def update_by_id(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    """UPDATE each row whose `id` is the row's "id" with its other values."""
    if not rows:
        return
    keys = [key for key in rows[0] if key != "id"]
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        await session.execute(
            update(table).where(table.c.id == bindparam("row_id"))
            .values({key: bindparam(key) for key in keys}),
            [{"row_id": row["id"], **{key: row[key] for key in keys}} for row in rows])
        return
    # Rows in id order, so that two writers lock them in the same order.
    rows = sorted(rows, key=lambda row: str(row["id"]))
    columns = ["id", *keys]
    quote = dialect.identifier_preparer.quote
    name = quote(table.name)
    # Names are the table's own columns (`_arrays` looks each up), quoted; values are bound.
    assignments = ", ".join(f"{quote(key)} = v.{quote(key)}" for key in keys)
    source = f"{_unnest(session, table, columns)} AS v({', '.join(map(quote, columns))})"
    statement = f"UPDATE {name} SET {assignments} FROM {source} WHERE {name}.id = v.id"  # noqa: S608
    await session.execute(text(statement), _arrays(table, columns, rows))


async def insert_rows(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT the rows (every column without a server default given)."""
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        await session.execute(insert(table), rows)
        return
    columns = list(rows[0])
    quote = session.get_bind().dialect.identifier_preparer.quote
    names = ", ".join(map(quote, columns))
    source = _unnest(session, table, columns)
    statement = f"INSERT INTO {quote(table.name)} ({names}) SELECT * FROM {source}"  # noqa: S608
    await session.execute(text(statement), _arrays(table, columns, rows))


def _unnest(session: AsyncSession, table: Table, columns: list[str]) -> str:
    dialect = session.get_bind().dialect
    return "unnest(" + ", ".join(
        f"CAST(:{column} AS {table.c[column].type.compile(dialect=dialect)}[])"
        for column in columns) + ")"


def _arrays(table: Table, columns: list[str], rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """A list per column, each value of the column's type (psycopg types an array by its
    first value: an int among floats would make it an integer array)."""
    arrays: dict[str, list[Any]] = {}
    for column in columns:
        values = [row[column] for row in rows]
        kind = _python_type(table, column)
        if kind in (int, float):
            values = [None if value is None else kind(value) for value in values]
        arrays[column] = values
    return arrays


def _python_type(table: Table, column: str) -> type | None:
    try:
        kind: type = table.c[column].type.python_type
    except NotImplementedError:
        return None
    return kind


def among(session: AsyncSession, column: Any, values: Collection[Any]
          ) -> ColumnElement[bool]:
    """`column IN values`: on PostgreSQL one array parameter (`= ANY(:values)`) rather than
    a placeholder per value, whose statement the driver parses anew for every count.
    `column`: a column or a mapped attribute."""
    if session.get_bind().dialect.name != "postgresql":
        return cast(ColumnElement[bool], column.in_(list(values)))
    return cast(ColumnElement[bool], column == any_(
        bindparam(None, list(values), type_=postgresql.ARRAY(column.type))))


async def insert_if_absent(session: AsyncSession, table: Table, row: dict[str, Any]) -> None:
    """INSERT the row unless one with its primary key exists (another process may make the
    same row at the same moment: both end with it, neither with a unique violation)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        await session.execute(postgresql.insert(table).values(row).on_conflict_do_nothing())
    else:
        await session.execute(sqlite.insert(table).values(row).on_conflict_do_nothing())
