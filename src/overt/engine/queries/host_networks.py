"""Reads of a host's network attachments, shared by the service that changes them and the
jobs that make the node apply them."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import HostNetworkAttachment, Network


async def list_attachments(session: AsyncSession, host_id: uuid.UUID
                           ) -> list[tuple[HostNetworkAttachment, Network]]:
    rows = await session.execute(
        select(HostNetworkAttachment, Network).join(
            Network, Network.id == HostNetworkAttachment.network_id)
        .where(HostNetworkAttachment.host_id == host_id).order_by(Network.name))
    return [(a, n) for a, n in rows.all()]
