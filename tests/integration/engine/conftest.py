"""Engine databases for integration tests, once on SQLite and once on PostgreSQL (tests
marked pg): `db_url` migrated to the current schema, `db` also seeded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from overt.engine.db import migrate
from overt.engine.db.database import Database
from overt.engine.db.seed import seed


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        url = str(request.getfixturevalue("fresh_postgres_url"))
    else:
        url = f"sqlite:///{tmp_path}/engine.db"
    migrate.upgrade(url)
    return url


@pytest_asyncio.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """The database with what every engine has (data center, cluster, Blank, ...)."""
    database = Database(db_url)
    await seed(database)
    yield database
    await database.dispose()
