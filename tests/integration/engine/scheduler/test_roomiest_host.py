"""The database's shortcut to the scheduler's choice agrees with the scheduler's own rule."""

from __future__ import annotations

import random
import uuid

from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID, seed
from overt.engine.db.tables import Cluster, Host, Vm
from overt.engine.model.errors import NoHostAvailable
from overt.engine.scheduler.loads import host_loads, roomiest_host
from overt.engine.scheduler.placement import PlacementRequest, place


async def test_the_roomiest_host_is_the_one_place_chooses(db_url: str) -> None:
    db = Database(db_url)
    await seed(db)
    rng = random.Random(11)  # noqa: S311 - test data
    async with db.transaction() as session:
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert cluster is not None
        hosts = [Host(id=uuid.uuid4(), name=f"h{n:03d}", address="192.0.2.1",
                      cluster_id=cluster.id, memory_mib=rng.choice([1024, 2048, 4096]),
                      status=rng.choice(["up", "up", "up", "maintenance", "non_responsive"]))
                 for n in range(40)]
        session.add_all(hosts)
        await session.flush()
        session.add_all(Vm(id=uuid.uuid4(), name=f"v{n:03d}", cluster_id=cluster.id,
                           template_id=BLANK_TEMPLATE_ID, memory_mib=rng.choice([128, 256, 512]),
                           status=rng.choice(["up", "up", "down", "paused"]),
                           host_id=rng.choice(hosts).id) for n in range(150))
    try:
        async with db.transaction() as session:
            loads = await host_loads(session, cluster.id)
            for memory in (64, 512, 1024, 2048, 3500, 5000):
                for overcommit in (100, 150):
                    request = PlacementRequest(vm_name="x", memory_mib=memory,
                                               overcommit_percent=overcommit)
                    try:
                        expected: uuid.UUID | None = place(request, loads).host_id
                    except NoHostAvailable:
                        expected = None
                    assert await roomiest_host(session, cluster.id, memory_mib=memory,
                                               overcommit_percent=overcommit) == expected
    finally:
        await db.dispose()
