"""MAC addresses for VM NICs, from oVirt's default pool range (56:6f:...)."""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import VmNic
from overt.engine.model.errors import Conflict

POOL_PREFIX = "56:6f"


async def allocate_mac(session: AsyncSession) -> str:
    for _ in range(64):
        tail = secrets.token_bytes(4)
        mac = POOL_PREFIX + "".join(f":{b:02x}" for b in tail)
        taken = (await session.execute(select(VmNic.id).where(VmNic.mac == mac))).first()
        if taken is None:
            return mac
    raise Conflict("no free MAC address was found in the pool; give the NIC a MAC address")
