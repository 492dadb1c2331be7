"""The agent's sequenced events that the broker has not confirmed yet, in publish order."""

from __future__ import annotations

import asyncio
from collections import deque

from overt.protocol import EventEnvelope


class Outbox:
    """An ordered buffer: events leave it only once confirmed, so a reconnection
    republishes from the first unconfirmed one (at least once, never out of order).

    `put` waits while `limit` events are unconfirmed: the producer slows down
    instead of the agent's memory growing while the broker is away.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the outbox must hold at least one event")
        self._limit = limit
        self._events: deque[EventEnvelope] = deque()
        self._changed = asyncio.Condition()

    def __len__(self) -> int:
        return len(self._events)

    async def put(self, event: EventEnvelope) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: len(self._events) < self._limit)
            self._events.append(event)
            self._changed.notify_all()

    async def head(self) -> EventEnvelope:
        """The oldest unconfirmed event (waits for one)."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._events))
            return self._events[0]

    async def confirm(self, event: EventEnvelope) -> None:
        """The broker confirmed `event`, the head: it leaves the outbox."""
        async with self._changed:
            if self._events and self._events[0] is event:
                self._events.popleft()
                self._changed.notify_all()

    async def drained(self) -> None:
        """Return once every event put so far has been confirmed."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self._events)
