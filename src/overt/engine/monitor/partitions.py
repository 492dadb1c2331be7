"""Which event partitions this monitor consumes: its share of the fleet, agreed through PostgreSQL.

Node events reach the broker in `EVENT_PARTITIONS` partition queues, a node always in
the same one (`overt.bus.amqp.topology.event_partition`). Monitors split the
partitions between them without consensus code of their own:

- Each live monitor holds a PostgreSQL session advisory lock on a *member slot*; the
  slots held are the members, in slot order, read by every monitor from `pg_locks`. A
  monitor that dies (or loses its database connection) loses its locks at once.
- Every monitor computes the same assignment from the same members and the same
  fleet (`share_out`: partitions weighted by their nodes, the heaviest first to the
  least loaded member), so adding a monitor takes partitions, and their nodes, off the
  others, and losing one hands its partitions to those left.
- A monitor consumes a partition only while it holds the partition's advisory lock.
  One that gives a partition up stops consuming it and records the events it holds
  before unlocking it, so the next owner starts where it stopped (a node's events in
  order, none refused). A monitor that loses its database connection gives up every
  partition at once; should two monitors ever consume one partition for a moment, the
  sink's (boot, seq) check still applies each event once and in order.

On SQLite (one engine process) the monitor consumes every partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from overt.bus.amqp.topology import EVENT_PARTITIONS, event_partition
from overt.engine.db.database import Database, async_url
from overt.engine.db.tables import Host

log = logging.getLogger(__name__)

# Advisory lock key spaces (the first of the two int4 keys): "ovM" and "ovP".
MEMBER_LOCKS = 0x6F764D00
PARTITION_LOCKS = 0x6F765000
MAX_MEMBERS = 256
# Ticks the fleet's spread over partitions must stay the same before shares follow it:
# while a fleet enrolls, partitions do not move at every new node.
SETTLE_TICKS = 3


class MembershipLost(RuntimeError):
    """This monitor's member lock is gone (its database session was reset)."""


_DB_ERRORS = (DBAPIError, OperationalError, OSError, MembershipLost)

Fleet = Callable[[], Awaitable[set[uuid.UUID]]]


class PartitionedTransport(Protocol):
    """What the keeper needs from the engine's AMQP transport."""

    @property
    def partitions(self) -> frozenset[int]: ...

    async def take_partition(self, partition: int) -> None: ...

    async def release_partition(self, partition: int, *, grace: float = 10.0) -> None: ...

    async def route_nodes(self, hosts: set[uuid.UUID]) -> None: ...


def share_out(weights: Sequence[int], members: Sequence[int]) -> dict[int, frozenset[int]]:
    """Each member's partitions: heaviest partition first, to the member with the least
    weight so far (then the fewest partitions, then the lowest slot). Deterministic."""
    load = {member: 0 for member in members}
    shares: dict[int, set[int]] = {member: set() for member in members}
    rank = {member: index for index, member in enumerate(members)}
    for partition in sorted(range(len(weights)), key=lambda p: (-weights[p], p)):
        member = min(members, key=lambda m: (load[m], len(shares[m]), rank[m]))
        load[member] += weights[partition]
        shares[member].add(partition)
    return {member: frozenset(share) for member, share in shares.items()}


def spread(hosts: set[uuid.UUID]) -> list[int]:
    """How many nodes each partition carries."""
    weights = [0] * EVENT_PARTITIONS
    for host in hosts:
        weights[event_partition(host)] += 1
    return weights


class PartitionKeeper:
    """Keeps this monitor's transport consuming its share of the partitions."""

    def __init__(self, db: Database, transport: PartitionedTransport, *, tick_s: float = 1.0,
                 fleet: Fleet | None = None, release_grace_s: float = 10.0) -> None:
        self.db = db
        self.transport = transport
        self.tick_s = tick_s
        self.release_grace_s = release_grace_s
        self._fleet = fleet or self._enrolled_hosts
        self._weights: list[int] | None = None  # what the shares follow
        self._seen: tuple[list[int], int] | None = None  # a newer spread, and for how long
        self.slot: int | None = None
        self.members: list[int] = []

    async def run(self) -> None:
        if self.db.is_sqlite:
            for partition in range(EVENT_PARTITIONS):
                await self.transport.take_partition(partition)
            while True:
                await self.transport.route_nodes(await self._fleet())
                await asyncio.sleep(self.tick_s)
        engine = create_async_engine(async_url(self.db.url), poolclass=NullPool,
                                     isolation_level="AUTOCOMMIT")
        try:
            while True:
                try:
                    async with engine.connect() as conn:
                        await self._keep(conn)
                except _DB_ERRORS as exc:
                    log.warning("monitor partitions: lost the database (%s); giving up every "
                                "partition until it is back", exc)
                await self._release_all()
                self.slot = None
                await asyncio.sleep(self.tick_s)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._release_all())
            await engine.dispose()

    async def _keep(self, conn: AsyncConnection) -> None:
        self.slot = await self._join(conn)
        log.info("monitor partitions: joined as member %d", self.slot)
        try:
            while True:
                await self.tick(conn)
                await asyncio.sleep(self.tick_s)
        finally:
            # Before the locks go with the connection: the next owners start where we stop.
            await asyncio.shield(self._release_all())

    async def tick(self, conn: AsyncConnection) -> None:
        """Bind new nodes, read the members, give up and take partitions to match."""
        assert self.slot is not None
        hosts = await self._fleet()
        await self.transport.route_nodes(hosts)
        weights = self._settled(spread(hosts))
        members = await self._members(conn)
        if self.slot not in members:  # our lock is gone: the session was reset
            raise MembershipLost("this monitor's member lock is gone")
        if members != self.members:
            log.info("monitor partitions: %d monitor(s) share %d partitions", len(members),
                     EVENT_PARTITIONS)
            self.members = members
        mine = share_out(weights, members)[self.slot]
        held = self.transport.partitions
        for partition in sorted(held - mine):
            await self.transport.release_partition(partition, grace=self.release_grace_s)
            await conn.execute(text("SELECT pg_advisory_unlock(:k, :p)"),
                               {"k": PARTITION_LOCKS, "p": partition})
        taken = []
        for partition in sorted(mine - held):
            got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k, :p)"),
                                      {"k": PARTITION_LOCKS, "p": partition})).scalar_one()
            if got:  # else its last owner is still finishing its events: next tick
                await self.transport.take_partition(partition)
                taken.append(partition)
        if held - mine or taken:
            log.info("monitor partitions: consuming %d (gave up %s, took %s)",
                     len(self.transport.partitions), sorted(held - mine) or "none",
                     taken or "none")

    def _settled(self, weights: list[int]) -> list[int]:
        if self._weights is None or weights == self._weights:
            self._weights, self._seen = weights, None
        elif self._seen is None or self._seen[0] != weights:
            self._seen = (weights, 1)
        else:
            ticks = self._seen[1] + 1
            self._seen = (weights, ticks)
            if ticks >= SETTLE_TICKS:
                self._weights, self._seen = weights, None
        return self._weights

    async def _join(self, conn: AsyncConnection) -> int:
        for slot in range(MAX_MEMBERS):
            got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k, :s)"),
                                      {"k": MEMBER_LOCKS, "s": slot})).scalar_one()
            if got:
                return slot
        raise RuntimeError(f"more than {MAX_MEMBERS} monitors share this database")

    async def _members(self, conn: AsyncConnection) -> list[int]:
        rows = await conn.execute(text(
            "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = :k AND objsubid = 2 AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) "
            "ORDER BY objid"), {"k": MEMBER_LOCKS})
        return [int(row[0]) for row in rows]

    async def _release_all(self) -> None:
        for partition in sorted(self.transport.partitions):
            await self.transport.release_partition(partition, grace=self.release_grace_s)

    async def _enrolled_hosts(self) -> set[uuid.UUID]:
        async with self.db.transaction() as session:
            rows = await session.execute(select(Host.host_uuid)
                                         .where(Host.host_uuid.is_not(None)))
            return {host for (host,) in rows if host is not None}

