import asyncio
import uuid

import pytest

from overt.bus.amqp.outbox import Outbox
from overt.protocol import EventEnvelope
from overt.protocol.events import Heartbeat

pytestmark = pytest.mark.asyncio

HOST, BOOT = uuid.uuid4(), uuid.uuid4()


def beat(seq: int) -> EventEnvelope:
    return EventEnvelope(host_uuid=HOST, boot_id=BOOT, seq=seq,
                         event=Heartbeat(vm_count=0, free_memory_mib=1, uptime_s=1))


async def test_events_leave_in_order_and_only_once_confirmed() -> None:
    outbox = Outbox(10)
    events = [beat(seq) for seq in (1, 2, 3)]
    for event in events:
        await outbox.put(event)
    assert await outbox.head() is events[0]
    assert await outbox.head() is events[0]  # unconfirmed: offered again (after a reconnection)
    await outbox.confirm(events[1])  # not the head: a stale confirmation changes nothing
    assert len(outbox) == 3
    for event in events:
        assert await outbox.head() is event
        await outbox.confirm(event)
    assert len(outbox) == 0


async def test_a_full_outbox_holds_the_producer_back_until_the_broker_confirms() -> None:
    outbox = Outbox(2)
    await outbox.put(beat(1))
    await outbox.put(beat(2))
    third = asyncio.create_task(outbox.put(beat(3)))
    await asyncio.sleep(0.05)
    assert not third.done()
    await outbox.confirm(await outbox.head())
    await asyncio.wait_for(third, 1)
    assert [(await outbox.head()).seq] == [2]


async def test_draining_waits_for_the_last_confirmation() -> None:
    outbox = Outbox(5)
    await outbox.put(beat(1))
    drained = asyncio.create_task(outbox.drained())
    await asyncio.sleep(0.05)
    assert not drained.done()
    await outbox.confirm(await outbox.head())
    await asyncio.wait_for(drained, 1)
