"""A write refused by a read-only server (a former primary after a failover) is the
database away for now: the connection is dropped and the next transaction gets another."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from overt.engine.db.availability import database_unavailable
from overt.engine.db.database import Database

pytestmark = [pytest.mark.pg]


async def test_a_write_refused_as_read_only_drops_its_connection(
        fresh_postgres_url: str) -> None:
    db = Database(fresh_postgres_url)
    try:
        async with db.transaction() as session:
            first = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        with pytest.raises(DBAPIError) as refused:
            async with db.transaction() as session:
                # What every transaction on a demoted primary is: read only.
                await session.execute(text("SET TRANSACTION READ ONLY"))
                await session.execute(text("CREATE TABLE refused (x int)"))
        assert "read-only transaction" in str(refused.value)
        assert database_unavailable(refused.value)
        async with db.transaction() as session:
            await session.execute(text("CREATE TABLE written (x int)"))
            second = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert second != first  # a new connection, not the one that was refused
    finally:
        await db.dispose()
