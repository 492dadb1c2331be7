"""Transactions that read a row and then change it never undo each other's work."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.tables import Cluster, Host


async def _host(db: Database) -> uuid.UUID:
    async with db.transaction() as session:
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert cluster is not None
        host = Host(id=uuid.uuid4(), name="h1", address="192.0.2.1", cluster_id=cluster.id,
                    status="up")
        session.add(host)
    return host.id


async def test_concurrent_read_modify_write_loses_no_update(db: Database) -> None:
    host_id = await _host(db)

    async def advance() -> None:
        async with db.transaction() as session:
            host = (await session.execute(select(Host).where(Host.id == host_id)
                                          .with_for_update())).scalar_one()
            seen = host.last_seq
            await asyncio.sleep(0.01)  # the others run meanwhile
            host.last_seq = seen + 1

    await asyncio.gather(*(advance() for _ in range(20)))
    async with db.transaction() as session:
        final = (await session.execute(select(Host.last_seq).where(Host.id == host_id))
                 ).scalar_one()
    assert final == 20


async def test_a_transaction_opened_inside_another_does_not_wait_for_it(db: Database) -> None:
    async with asyncio.timeout(10), db.transaction() as outer:
        assert (await outer.execute(select(Host.id))).all() == []
        async with db.transaction() as inner:
            assert (await inner.execute(select(Cluster.name))).scalars().all() == ["Default"]
