"""MAC pools: the ranges VM NICs take their MACs from, per cluster (oVirt's `macpools`).

A MAC given by the client must lie in its cluster's pool and be unused (the engine keeps
VM NIC MACs unique even in a pool that allows duplicates); a MAC it picks is always unused.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.seed import DEFAULT_MAC_POOL_ID as DEFAULT_POOL_ID
from overt.engine.db.seed import ensure_default_mac_pool as ensure_default
from overt.engine.db.tables import Cluster, ClusterMacPool, MacPool, User, VmNic
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.model.names import check_name
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_TRIES = 64


@dataclass
class MacPoolInput:
    """What a client may set on a MAC pool; None leaves a field as it is."""

    name: str | None = None
    description: str | None = None
    allow_duplicates: bool | None = None
    ranges: list[tuple[str | None, str | None]] | None = None


def mac_to_int(mac: str) -> int:
    return int(mac.replace(":", ""), 16)


def int_to_mac(value: int) -> str:
    raw = f"{value:012x}"
    return ":".join(raw[i:i + 2] for i in range(0, 12, 2))


def check_mac(mac: str, what: str = "nic.mac.address") -> str:
    """A unicast MAC in lower case, or InvalidInput."""
    mac = mac.strip().lower()
    if not _MAC_RE.match(mac):
        raise InvalidInput(f"{what} {mac!r} is not a MAC address like 56:6f:1a:2b:3c:4d")
    if int(mac[:2], 16) & 1:
        raise InvalidInput(f"{what} {mac} is a multicast address")
    return mac


def _check_ranges(ranges: list[tuple[str | None, str | None]]) -> list[list[str]]:
    if not ranges:
        raise InvalidInput("mac_pool.ranges must have at least one range")
    checked = []
    for first, last in ranges:
        if not first or not last:
            raise InvalidInput("mac_pool.ranges.range needs both from and to")
        lo = check_mac(first, "mac_pool.ranges.range.from")
        hi = check_mac(last, "mac_pool.ranges.range.to")
        if mac_to_int(lo) > mac_to_int(hi):
            raise InvalidInput(f"mac_pool.ranges.range {lo}-{hi}: from is after to")
        checked.append([lo, hi])
    return checked


async def pool_of_cluster(session: AsyncSession, cluster_id: uuid.UUID) -> MacPool:
    link = await session.get(ClusterMacPool, cluster_id)
    if link is not None:
        pool = await session.get(MacPool, link.mac_pool_id)
        if pool is not None:
            return pool
    return await ensure_default(session)


async def assign(session: AsyncSession, cluster: Cluster, ref: Ref) -> None:
    """Give `cluster` the pool `ref` names (its NICs keep their MACs)."""
    pool = await lookup.resolve(session, MacPool, ref, "cluster.mac_pool")
    await session.execute(delete(ClusterMacPool).where(ClusterMacPool.cluster_id == cluster.id))
    if pool.id != DEFAULT_POOL_ID:
        session.add(ClusterMacPool(cluster_id=cluster.id, mac_pool_id=pool.id))


def in_pool(pool: MacPool, mac: str) -> bool:
    value = mac_to_int(mac)
    return any(mac_to_int(lo) <= value <= mac_to_int(hi) for lo, hi in pool.ranges)


async def _taken(session: AsyncSession, mac: str, other_than: uuid.UUID | None) -> bool:
    stmt = select(VmNic.id).where(VmNic.mac == mac)
    if other_than is not None:
        stmt = stmt.where(VmNic.id != other_than)
    return (await session.execute(stmt)).first() is not None


async def claim(session: AsyncSession, cluster_id: uuid.UUID, mac: str, *,
                nic_id: uuid.UUID | None = None) -> str:
    """Check a client's MAC against the cluster's pool: inside it, and unused unless allowed."""
    mac = check_mac(mac)
    pool = await pool_of_cluster(session, cluster_id)
    if not in_pool(pool, mac):
        ranges = ", ".join(f"{lo}-{hi}" for lo, hi in pool.ranges)
        raise InvalidInput(f"MAC address {mac} is outside MAC pool {pool.name} ({ranges})")
    if await _taken(session, mac, nic_id):  # `allow_duplicates` is kept but not yet honoured
        raise Conflict(f"MAC address {mac} is already in use")
    return mac


async def allocate(session: AsyncSession, cluster_id: uuid.UUID) -> str:
    """An unused MAC from the cluster's pool, at random (large pools rarely collide)."""
    pool = await pool_of_cluster(session, cluster_id)
    spans = [(mac_to_int(lo), mac_to_int(hi)) for lo, hi in pool.ranges]
    total = sum(hi - lo + 1 for lo, hi in spans)
    for _ in range(_TRIES if total > _TRIES else 0):
        mac = _nth(spans, secrets.randbelow(total))
        if not await _taken(session, mac, None):
            return mac
    if total <= _TRIES * 64:  # a small pool: look at every address once
        used = set((await session.execute(select(VmNic.mac))).scalars())
        for lo, hi in spans:
            for value in range(lo, hi + 1):
                if int_to_mac(value) not in used:
                    return int_to_mac(value)
    raise Conflict(f"MAC pool {pool.name} has no free MAC address left")


def _nth(spans: list[tuple[int, int]], index: int) -> str:
    for lo, hi in spans:
        size = hi - lo + 1
        if index < size:
            return int_to_mac(lo + index)
        index -= size
    raise AssertionError("index beyond the pool")


async def _name_taken(session: AsyncSession, name: str, other_than: uuid.UUID | None) -> bool:
    stmt = select(MacPool.id).where(MacPool.name == name)
    if other_than is not None:
        stmt = stmt.where(MacPool.id != other_than)
    return (await session.execute(stmt)).first() is not None


async def add_pool(session: AsyncSession, data: MacPoolInput, user: User) -> MacPool:
    name = check_name("mac_pool", data.name or "")
    ranges = _check_ranges(data.ranges or [])
    await ensure_default(session)
    if await _name_taken(session, name, None):
        raise Conflict(f"Cannot add MAC pool. The name {name!r} is already in use.")
    pool = MacPool(id=uuid.uuid4(), name=name, description=data.description or "",
                   allow_duplicates=bool(data.allow_duplicates), ranges=ranges)
    session.add(pool)
    await session.flush()
    audit.record(session, f"MAC pool {name} was added by {user.user_name}",
                 code=audit.NETWORK_UPDATED, user_id=user.id)
    return pool


async def update_pool(session: AsyncSession, pool_id: uuid.UUID, data: MacPoolInput,
                      user: User) -> MacPool:
    pool = await lookup.get(session, MacPool, pool_id, for_update=True)
    if data.name is not None:
        name = check_name("mac_pool", data.name)
        if await _name_taken(session, name, pool.id):
            raise Conflict(f"Cannot edit MAC pool. The name {name!r} is already in use.")
        pool.name = name
    if data.ranges is not None:
        pool.ranges = _check_ranges(data.ranges)
    if data.allow_duplicates is not None:
        pool.allow_duplicates = data.allow_duplicates
    if data.description is not None:
        pool.description = data.description
    audit.record(session, f"MAC pool {pool.name} was updated by {user.user_name}",
                 code=audit.NETWORK_UPDATED, user_id=user.id)
    return pool


async def remove_pool(session: AsyncSession, pool_id: uuid.UUID, user: User) -> None:
    pool = await lookup.get(session, MacPool, pool_id, for_update=True)
    if pool.default_pool:
        raise Conflict(f"Cannot remove MAC pool {pool.name}: it is the default pool.")
    users = await lookup.count(session, ClusterMacPool, ClusterMacPool.mac_pool_id == pool.id)
    if users:
        raise Conflict(f"Cannot remove MAC pool {pool.name}: {users} cluster(s) use it.")
    audit.record(session, f"MAC pool {pool.name} was removed by {user.user_name}",
                 code=audit.NETWORK_UPDATED, user_id=user.id)
    await session.delete(pool)
