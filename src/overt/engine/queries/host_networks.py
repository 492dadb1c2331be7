"""Reads of a host's network attachments, shared by the service that changes them and the
jobs that make the node apply them."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import ClusterNetwork, Host, HostNetworkAttachment, Network
from overt.engine.model.status import NetworkUsage


async def list_attachments(session: AsyncSession, host_id: uuid.UUID
                           ) -> list[tuple[HostNetworkAttachment, Network]]:
    rows = await session.execute(
        select(HostNetworkAttachment, Network).join(
            Network, Network.id == HostNetworkAttachment.network_id)
        .where(HostNetworkAttachment.host_id == host_id).order_by(Network.name))
    return [(a, n) for a, n in rows.all()]


async def migration_address(session: AsyncSession, host: Host) -> tuple[str, Network | None]:
    """Where a migration's stream reaches `host`: its address on its cluster's migration
    network (a network with usage `migration` attached to the cluster, wired on the host
    with a static address), else its management address (with no network)."""
    rows = await session.execute(
        select(HostNetworkAttachment, Network)
        .join(Network, Network.id == HostNetworkAttachment.network_id)
        .join(ClusterNetwork, ClusterNetwork.network_id == Network.id)
        .where(HostNetworkAttachment.host_id == host.id,
               ClusterNetwork.cluster_id == host.cluster_id).order_by(Network.name))
    for attachment, network in rows.all():
        if NetworkUsage.MIGRATION.value in network.usages and attachment.address:
            return attachment.address, network
    return host.address, None
