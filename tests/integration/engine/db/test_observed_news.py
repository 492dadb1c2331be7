"""The monitors' word "these VMs changed" through PostgreSQL's LISTEN/NOTIFY: a process
that announces, another that listens (two databases' connection pools, as two engine
processes have)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from overt.engine.db.database import Database
from overt.engine.db.observed_news import Announcer, listen

pytestmark = pytest.mark.pg


@pytest.fixture
async def heard(fresh_postgres_url: str) -> AsyncIterator[asyncio.Queue[list[uuid.UUID] | None]]:
    """What a listening process hears, in order."""
    queue: asyncio.Queue[list[uuid.UUID] | None] = asyncio.Queue()
    listener = asyncio.create_task(listen(fresh_postgres_url, queue.put_nowait))
    assert await asyncio.wait_for(queue.get(), 30) is None  # listening: everyone looks once
    yield queue
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)


async def test_a_monitors_changed_vms_reach_a_listening_process(
        fresh_postgres_url: str, heard: asyncio.Queue[list[uuid.UUID] | None]) -> None:
    db = Database(fresh_postgres_url)
    announcer = Announcer(db)
    sending = asyncio.create_task(announcer.run())
    try:
        first, second = uuid.uuid4(), uuid.uuid4()
        announcer.changed([first])
        announcer.changed([second])
        got: set[uuid.UUID] = set()
        while got != {first, second}:
            ids = await asyncio.wait_for(heard.get(), 30)
            assert ids is not None
            got.update(ids)
        announcer.changed(None)  # a host's whole state: any VM
        assert await asyncio.wait_for(heard.get(), 30) is None
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        await db.dispose()


async def test_a_listener_whose_connection_is_cut_listens_again_and_wakes_everyone(
        fresh_postgres_url: str, heard: asyncio.Queue[list[uuid.UUID] | None]) -> None:
    db = Database(fresh_postgres_url)
    try:
        async with db.transaction() as session:
            await session.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN %' AND pid <> pg_backend_pid()"))
        assert await asyncio.wait_for(heard.get(), 30) is None  # back, everyone looks
        announcer = Announcer(db)
        sending = asyncio.create_task(announcer.run())
        vm_id = uuid.uuid4()
        announcer.changed([vm_id])
        assert await asyncio.wait_for(heard.get(), 30) == [vm_id]
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
    finally:
        await db.dispose()
