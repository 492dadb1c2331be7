"""Two monitors share the fleet's event partitions through PostgreSQL advisory locks on a real
RabbitMQ (this run's own vhost): each node's events reach one monitor, a second monitor takes
half the load off the first, and a monitor that dies hands its partitions to the other
without losing an event.

The sink applies a node's events in order, each once, and refuses one that comes before its
predecessor, as the engine's monitor does (tests/integration/bus/amqp/
test_competing_monitors.py); here it must never have to refuse.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from overt.bus.amqp.agent import AmqpAgentTransport
from overt.bus.amqp.engine import AmqpEngineTransport
from overt.bus.amqp.link import Backoff
from overt.bus.amqp.topology import EVENT_PARTITIONS
from overt.engine.db.database import Database
from overt.engine.monitor.partitions import PartitionKeeper
from tests.integration.bus.amqp.test_competing_monitors import OrderingSink
from tests.integration.bus.contract.harness import answering_handler, eventually, heartbeat
from tests.integration.bus.contract.transports import TEST_BACKOFF
from tests.support.broker import Broker

pytestmark = [pytest.mark.amqp, pytest.mark.pg, pytest.mark.asyncio]

NODES = 24
# Fixed node identities: the same partitions, so the same shares, on every run.
HOSTS = [uuid.uuid5(uuid.NAMESPACE_DNS, f"node-{n}.partitions.test") for n in range(NODES)]


@dataclass
class MonitorUnderTest:
    name: str
    transport: AmqpEngineTransport
    keeper: PartitionKeeper
    db: Database
    task: asyncio.Task[None]

    @property
    def partitions(self) -> frozenset[int]:
        return self.transport.partitions

    async def crash(self) -> None:
        """What kill -9 does to it, seen from the broker and PostgreSQL: its connections
        drop with events unacknowledged, nothing is handed over."""
        await self.transport._link.close()  # no goodbye, as in a crash
        if self.transport._delivery is not None:  # and its lanes die with the process
            await self.transport._delivery.stop(grace=0)
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.db.dispose()

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.transport.close()
        await self.db.dispose()


@pytest_asyncio.fixture
async def fleet(rabbitmq: Broker) -> AsyncIterator[list[AmqpAgentTransport]]:
    async def start(host: uuid.UUID) -> AmqpAgentTransport:
        agent = AmqpAgentTransport(await rabbitmq.enroll(host), host, backoff=TEST_BACKOFF)
        await agent.start(answering_handler(host))
        return agent
    agents = list(await asyncio.gather(*(start(host) for host in HOSTS)))
    yield agents
    for agent in agents:
        await agent.close()


async def _monitor(name: str, engine_url: str, db_url: str, sink: OrderingSink
                   ) -> MonitorUnderTest:
    transport = AmqpEngineTransport(engine_url, backoff=TEST_BACKOFF, prefetch=50, assigned=True,
                                    sink_retry=Backoff(initial=0.02, maximum=0.2))
    await transport.start(sink.of(name))

    async def known_hosts() -> set[uuid.UUID]:
        return set(HOSTS)

    db = Database(db_url)
    keeper = PartitionKeeper(db, transport, tick_s=0.2, fleet=known_hosts, release_grace_s=60)
    return MonitorUnderTest(name, transport, keeper, db,
                            asyncio.create_task(keeper.run(), name=f"keeper {name}"))


async def _send(agents: list[AmqpAgentTransport], boot: uuid.UUID, seqs: range) -> None:
    async def one(agent: AmqpAgentTransport) -> None:
        for seq in seqs:
            await agent.publish(heartbeat(agent.host_uuid, boot, seq))
            await asyncio.sleep(0.01)
    await asyncio.gather(*(one(agent) for agent in agents))


def _applied_by(sink: OrderingSink, seqs: range) -> Counter[str]:
    return Counter(monitor for _host, seq, monitor in sink.applied if seq in seqs)


async def test_monitors_split_the_fleet_and_a_dead_ones_partitions_move_without_loss(
        rabbitmq: Broker, fresh_postgres_url: str, fleet: list[AmqpAgentTransport]) -> None:
    sink, boot = OrderingSink(), uuid.uuid4()
    engine_url = await rabbitmq.engine_url()
    first = await _monitor("first", engine_url, fresh_postgres_url, sink)
    monitors = [first]
    try:
        await eventually(lambda: len(first.partitions) == EVENT_PARTITIONS, within=60,
                         what="the only monitor to consume every partition")
        alone = range(1, 21)
        sending = asyncio.create_task(_send(fleet, boot, alone))
        await eventually(lambda: len(sink.applied) >= NODES * 5, within=60,
                         what="the first events")
        # A second monitor joins while events flow: half the partitions move to it.
        second = await _monitor("second", engine_url, fresh_postgres_url, sink)
        monitors.append(second)
        await eventually(lambda: len(second.partitions) == EVENT_PARTITIONS // 2, within=60,
                         what="the second monitor to take its share")
        assert not first.partitions & second.partitions
        await sending
        await eventually(lambda: len(sink.applied) == NODES * len(alone), within=60,
                         what="every event sent so far to be applied")

        # The hand-over kept each node's order: nothing was refused as too early.
        assert [m.transport.counts["refused"] for m in monitors] == [0, 0]
        before = [dict(m.transport.counts) for m in monitors]
        shared = range(21, 61)
        await _send(fleet, boot, shared)
        await eventually(lambda: len(sink.applied) == NODES * 60, within=60,
                         what="every event sent while both run to be applied")
        split = _applied_by(sink, shared)
        assert split["first"] + split["second"] == NODES * len(shared)
        assert abs(split["first"] - split["second"]) <= 0.2 * max(split.values()), split
        # Steady state: every event taken once, none refused, none delivered again.
        for monitor, was in zip(monitors, before, strict=True):
            now = monitor.transport.counts
            assert (now["refused"], now["redelivered"]) == (was["refused"], was["redelivered"])
        assert sum(m.transport.counts["events"] - was["events"]
                   for m, was in zip(monitors, before, strict=True)) == NODES * len(shared)

        # The first dies with events in hand: the second takes its partitions and events.
        late = range(61, 101)
        sending = asyncio.create_task(_send(fleet, boot, late))
        await eventually(lambda: len(sink.applied) >= NODES * 70, within=60,
                         what="events after the crash started to flow")
        await first.crash()
        monitors.remove(first)
        after_crash = len(sink.applied)
        await eventually(lambda: len(second.partitions) == EVENT_PARTITIONS, within=60,
                         what="the dead monitor's partitions to move")
        await sending
        await eventually(lambda: len(sink.applied) == NODES * 100, within=60,
                         what="every event to be applied")
    finally:
        for monitor in monitors:
            await monitor.stop()
    for host in HOSTS:
        assert sink.seqs(host) == list(range(1, 101)), host  # each once, in order
    assert {monitor for _host, _seq, monitor in sink.applied[after_crash:]} == {"second"}
