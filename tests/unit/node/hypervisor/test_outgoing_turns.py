"""Outgoing migrations take turns: at most `max_at_once` leave a node at once, the others
wait; one cancelled while it waits never begins and holds no turn."""

from __future__ import annotations

import asyncio
import uuid

from overt.node.hypervisor.executor import BlockingCalls
from overt.node.hypervisor.libvirt_outgoing import OutgoingMigrations


async def test_two_at_once_the_third_waits_and_a_cancelled_waiter_never_begins() -> None:
    outgoing = OutgoingMigrations(BlockingCalls(), max_at_once=2)
    first, second, third, fourth = (uuid.uuid4() for _ in range(4))
    assert await outgoing._wait_turn(first) and await outgoing._wait_turn(second)
    waiting = asyncio.create_task(outgoing._wait_turn(third))
    later = asyncio.create_task(outgoing._wait_turn(fourth))
    await asyncio.sleep(0.01)
    assert not waiting.done() and not later.done()  # both turns are taken

    assert outgoing.cancel_waiting(third)
    assert await asyncio.wait_for(waiting, 1) is False  # cancelled before it began
    assert not outgoing.cancel_waiting(first)  # it runs: libvirt's abort is for it
    await asyncio.sleep(0.01)
    assert not later.done()  # the cancelled one took no turn, none came free

    outgoing._turns.release()  # the first migration ends
    assert await asyncio.wait_for(later, 1) is True
    assert not outgoing.cancel_waiting(fourth)


async def test_a_call_cancelled_while_it_waits_holds_no_turn() -> None:
    outgoing = OutgoingMigrations(BlockingCalls(), max_at_once=1)
    assert await outgoing._wait_turn(uuid.uuid4())
    waiting = asyncio.create_task(outgoing._wait_turn(uuid.uuid4()))
    await asyncio.sleep(0.01)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    outgoing._turns.release()
    assert await asyncio.wait_for(outgoing._wait_turn(uuid.uuid4()), 1)  # the turn is free
