"""Engine databases for integration tests, once on SQLite and once on PostgreSQL (tests
marked pg): `db_url` migrated to the current schema, `db` also seeded; and `engine`, the
fast lane's in-process engine with simulated nodes."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from overt.engine.db import migrate
from overt.engine.db.database import Database
from overt.engine.db.seed import seed
from tests.support import schema
from tests.support.loopback import LoopbackEngine


@pytest.fixture(scope="session")
def migrated_sqlite() -> Path:
    """A SQLite database at the current schema, built once: each test gets a copy."""
    return schema.migrated_sqlite()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        url = str(request.getfixturevalue("fresh_postgres_url"))
        migrate.upgrade(url)
        return url
    shutil.copyfile(request.getfixturevalue("migrated_sqlite"), tmp_path / "engine.db")
    return f"sqlite:///{tmp_path}/engine.db"


@pytest_asyncio.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """The database with what every engine has (data center, cluster, Blank, ...)."""
    database = Database(db_url)
    await seed(database)
    yield database
    await database.dispose()


@pytest.fixture
def memory_dir() -> Iterator[Path]:
    """A scratch directory in memory when the machine has one (/dev/shm): the fast lane's
    databases commit without waiting for a disk."""
    shm = Path("/dev/shm")
    path = Path(tempfile.mkdtemp(prefix="overt-lane-", dir=shm if shm.is_dir() else None))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest_asyncio.fixture
async def engine(migrated_sqlite: Path, memory_dir: Path) -> AsyncIterator[LoopbackEngine]:
    """The fast lane's engine (worker, monitor) on SQLite, with no host yet: tests add
    simulated ones (`await engine.add_host(...)`)."""
    shutil.copyfile(migrated_sqlite, memory_dir / "engine.db")
    database = Database(f"sqlite:///{memory_dir}/engine.db")
    await seed(database)
    running = LoopbackEngine(database, memory_dir / "nodes")
    await running.start()
    yield running
    await running.stop()
    await database.dispose()
