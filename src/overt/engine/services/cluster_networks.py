"""Networks of a cluster: which of its data center's networks its hosts must carry.

A management network is attached to every cluster of its data center and stays so; other
networks are attached explicitly (`clusters/{id}/networks`), required or not.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Cluster, ClusterNetwork, Network, User
from overt.engine.model.errors import Conflict, InvalidInput, NotFound
from overt.engine.monitor.required_networks import judge_cluster
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref
from overt.engine.services.networks import is_management


@dataclass(frozen=True)
class Attached:
    network: Network
    required: bool


async def list_attached(session: AsyncSession, cluster: Cluster) -> list[Attached]:
    rows = (await session.execute(select(Network).where(
        Network.data_center_id == cluster.data_center_id).order_by(Network.name))).scalars()
    links = {link.network_id: link for link in (await session.execute(select(ClusterNetwork).where(
        ClusterNetwork.cluster_id == cluster.id))).scalars()}
    attached = []
    for network in rows:
        if is_management(network):
            attached.append(Attached(network, True))
        elif network.id in links:
            attached.append(Attached(network, links[network.id].required))
    return attached


async def get_attached(session: AsyncSession, cluster: Cluster,
                       network_id: uuid.UUID) -> Attached:
    for item in await list_attached(session, cluster):
        if item.network.id == network_id:
            return item
    raise NotFound(f"network {network_id} is not attached to cluster {cluster.name}")


async def attach(session: AsyncSession, cluster: Cluster, ref: Ref | None,
                 required: bool | None, user: User) -> Attached:
    network = await lookup.resolve(session, Network, ref, "network")
    if network.data_center_id != cluster.data_center_id:
        raise InvalidInput(f"Network {network.name} belongs to another data center than "
                           f"cluster {cluster.name}")
    if is_management(network) or await session.get(ClusterNetwork,
                                                    (cluster.id, network.id)) is not None:
        raise Conflict(f"Network {network.name} is already attached to cluster {cluster.name}")
    link = ClusterNetwork(cluster_id=cluster.id, network_id=network.id,
                          required=True if required is None else required)
    session.add(link)
    audit.record(session, f"Network {network.name} was attached to Cluster {cluster.name} by "
                 f"{user.user_name}", code=audit.NETWORK_UPDATED, cluster_id=cluster.id,
                 user_id=user.id)
    await session.flush()
    await judge_cluster(session, cluster)
    return Attached(network, link.required)


async def update(session: AsyncSession, cluster: Cluster, network_id: uuid.UUID,
                 required: bool | None) -> Attached:
    item = await get_attached(session, cluster, network_id)
    if required is None:
        return item
    if is_management(item.network):
        if not required:
            raise Conflict(f"Network {item.network.name} is the management network: it stays "
                           "required.")
        return item
    link = await session.get(ClusterNetwork, (cluster.id, network_id))
    assert link is not None
    link.required = required
    await session.flush()
    await judge_cluster(session, cluster)
    return Attached(item.network, required)


async def detach(session: AsyncSession, cluster: Cluster, network_id: uuid.UUID,
                 user: User) -> None:
    item = await get_attached(session, cluster, network_id)
    if is_management(item.network):
        raise Conflict(f"Cannot detach Network {item.network.name} from cluster {cluster.name}: "
                       "it is the management network.")
    link = await session.get(ClusterNetwork, (cluster.id, network_id))
    assert link is not None
    await session.delete(link)
    audit.record(session, f"Network {item.network.name} was detached from Cluster "
                 f"{cluster.name} by {user.user_name}", code=audit.NETWORK_UPDATED,
                 cluster_id=cluster.id, user_id=user.id)
    await session.flush()
    await judge_cluster(session, cluster)


async def required_networks(session: AsyncSession, cluster: Cluster) -> list[Network]:
    return [item.network for item in await list_attached(session, cluster) if item.required]
