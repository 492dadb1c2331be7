"""Connecting to the database: SQLite (embedded default) or PostgreSQL, always async.

Callers give the usual URL (`sqlite:///path`, `postgresql+psycopg://...`); the async
driver is chosen here. Schema changes are Alembic migrations (see `migrate`).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from overt.engine.db.availability import drop_connections_to_demoted_servers


def async_url(url: str) -> str:
    """The async-driver form of a database URL."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql+psycopg://")


def sync_url(url: str) -> str:
    """The synchronous-driver form (for Alembic)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    driver = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}.get(backend)
    if driver is None:
        raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql+psycopg://")
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# Set while the current task is inside a SQLite transaction (see Database.transaction).
_IN_SQLITE_TRANSACTION: ContextVar[bool] = ContextVar("in_sqlite_transaction", default=False)


class Database:
    """The engine's database: an async engine and a session factory.

    On PostgreSQL transactions run side by side and `SELECT ... FOR UPDATE` locks the
    rows a transaction is about to change. SQLite has no row locks, and its driver reads
    outside any transaction until the first write, so two transactions could each read a
    row and the later commit would silently undo the earlier one (a monitor applying an
    event while a resync reconciles the same host). SQLite admits a single writer anyway:
    here its transactions take turns, in the order they asked, within the one engine
    process that may use a SQLite database.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = make_url(url).get_backend_name() == "sqlite"
        self.engine: AsyncEngine = create_async_engine(
            async_url(url), echo=echo, pool_pre_ping=True,
            **({} if self.is_sqlite else {"pool_size": 10, "max_overflow": 20}))
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            drop_connections_to_demoted_servers(self.engine.sync_engine)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = \
            weakref.WeakKeyDictionary()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on error."""
        if not self.is_sqlite or _IN_SQLITE_TRANSACTION.get():
            async with self.sessions() as session, session.begin():
                yield session
            return
        async with self._turn():
            marker = _IN_SQLITE_TRANSACTION.set(True)
            try:
                async with self.sessions() as session, session.begin():
                    yield session
            finally:
                _IN_SQLITE_TRANSACTION.reset(marker)

    @asynccontextmanager
    async def between_transactions(self) -> AsyncIterator[None]:
        """A moment when no other task of this process is inside a SQLite transaction:
        the one to cancel tasks in. A task cancelled half-way through an aiosqlite query
        leaves its connection unable to close (SQLAlchemy's terminate stops aiosqlite's
        thread while the graceful close it started still waits on that thread), and
        whatever closes the engine then waits for ever. SQLite's transactions take turns
        on one lock (`transaction`): holding it, no task is inside one. PostgreSQL's
        driver needs no such care."""
        if not self.is_sqlite or _IN_SQLITE_TRANSACTION.get():
            yield
            return
        async with self._turn():
            yield

    def _turn(self) -> asyncio.Lock:
        """The lock SQLite transactions of this event loop take turns on."""
        loop = asyncio.get_running_loop()
        lock = self._turns.get(loop)
        if lock is None:
            lock = self._turns[loop] = asyncio.Lock()
        return lock

    async def dispose(self) -> None:
        await self.engine.dispose()
