"""Engine databases for integration tests, once on SQLite and once on PostgreSQL (tests
marked pg): `db_url` migrated to the current schema, `db` also seeded; and `engine`, the
fast lane's in-process engine with simulated nodes."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import pytest_asyncio

from overt.engine.db import migrate
from overt.engine.db.database import Database
from overt.engine.db.seed import seed
from tests.support import schema
from tests.support.loopback import HEARTBEAT_CHECK_S, LoopbackEngine


@pytest.fixture(scope="session")
def migrated_sqlite() -> Path:
    """A SQLite database at the current schema, built once: each test gets a copy."""
    return schema.migrated_sqlite()


@pytest.fixture(scope="session")
def seeded_sqlite(migrated_sqlite: Path, lane_dir: Path) -> Path:
    """The migrated database with what `seed` gives every engine (data center, cluster,
    Blank, ...), built once per test process: each engine test gets a copy instead of
    seeding its own (7 ms of CPU each, hundreds of times a run). `seed` itself runs in
    the tests that call it."""
    path = lane_dir / "seeded.db"
    shutil.copyfile(migrated_sqlite, path)

    async def build() -> None:
        database = Database(f"sqlite:///{path}")
        try:
            await seed(database)
        finally:
            await database.dispose()
    with ThreadPoolExecutor(1) as thread:  # its own event loop, apart from the tests'
        thread.submit(asyncio.run, build()).result()
    return path


@pytest.fixture(scope="session")
def lane_dir() -> Iterator[Path]:
    """Where this test process keeps its SQLite databases: in memory when the machine has
    it (/dev/shm), so they commit without waiting for a disk."""
    shm = Path("/dev/shm")
    path = Path(tempfile.mkdtemp(prefix="overt-db-", dir=shm if shm.is_dir() else None))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# One `Database` per file for the whole test process: each test gets the file fresh (a
# copy of the migrated one) but the same SQLAlchemy engine, whose cache of compiled SQL
# then serves every test instead of each compiling every statement again (a third of
# what an engine test spends otherwise).
_DATABASES: dict[Path, Database] = {}


def _fresh_sqlite(migrated: Path, path: Path) -> Database:
    """The database at `path`, as migrated and never used (the previous test disposed of
    its connections; any it leaked keep the file they had, removed here)."""
    for leftover in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
        leftover.unlink(missing_ok=True)
    shutil.copyfile(migrated, path)
    database = _DATABASES.get(path)
    if database is None:
        database = _DATABASES[path] = Database(f"sqlite:///{path}")
    return database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def db_url(request: pytest.FixtureRequest, lane_dir: Path) -> str:
    if request.param == "postgresql":
        url = str(request.getfixturevalue("fresh_postgres_url"))
        migrate.upgrade(url)
        return url
    return _fresh_sqlite(request.getfixturevalue("migrated_sqlite"), lane_dir / "engine.db").url


@pytest_asyncio.fixture
async def db(db_url: str, lane_dir: Path, seeded_sqlite: Path) -> AsyncIterator[Database]:
    """The database with what every engine has (data center, cluster, Blank, ...)."""
    if db_url.startswith("sqlite"):  # the file `db_url` made, now a copy of the seeded one
        database = _fresh_sqlite(seeded_sqlite, lane_dir / "engine.db")
        assert database.url == db_url
    else:
        database = Database(db_url)
        await seed(database)
    yield database
    await database.dispose()


@pytest.fixture
def memory_dir() -> Iterator[Path]:
    """A scratch directory in memory when the machine has one (/dev/shm), for the simulated
    nodes' files (their idempotency databases commit without waiting for a disk)."""
    shm = Path("/dev/shm")
    path = Path(tempfile.mkdtemp(prefix="overt-lane-", dir=shm if shm.is_dir() else None))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def heartbeat_check_s() -> float | None:
    """How often the engine's monitor judges hosts on their heartbeats (None: every tick, as
    the engine does); a test module that backdates heartbeats overrides it with None."""
    return HEARTBEAT_CHECK_S


@pytest_asyncio.fixture
async def engine(seeded_sqlite: Path, lane_dir: Path, memory_dir: Path,
                 heartbeat_check_s: float | None) -> AsyncIterator[LoopbackEngine]:
    """The fast lane's engine (worker, monitor) on SQLite, with no host yet: tests add
    simulated ones (`await engine.add_host(...)`)."""
    database = _fresh_sqlite(seeded_sqlite, lane_dir / "loopback.db")
    running = LoopbackEngine(database, memory_dir / "nodes",
                             heartbeat_check_s=heartbeat_check_s)
    await running.start()
    yield running
    await running.stop()
    await database.dispose()
