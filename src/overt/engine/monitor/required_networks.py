"""Whether a host carries every required network of its cluster, judged from what its node
reported realised (`Host.reported_networks`); a host that lacks one is non operational
with oVirt's reason `network_unreachable`, and is up again by itself once it carries it or
the network is no longer required (oVirt's auto-recovery).

Judged when the node's full report is applied, when a host is heard again, and when a
cluster's networks change. The management network is not judged: the engine hears the
node over it. A node that does not manage host networks reports none: its attachments
the engine saw applied stand for its report.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Cluster, ClusterNetwork, Host, Network
from overt.engine.model.host_actions import HostAction, host_action_allowed, status_after
from overt.engine.model.network_sync import (
    NETWORK_UNREACHABLE,
    missing_networks,
    parse_reported,
)
from overt.engine.model.status import HostStatus, LogSeverity, NetworkUsage
from overt.engine.queries.host_networks import list_attachments

_JUDGED = frozenset({HostStatus.UP, HostStatus.CONNECTING, HostStatus.INITIALIZING,
                     HostStatus.NON_OPERATIONAL})


async def host_lacks(session: AsyncSession, host: Host, cluster: Cluster) -> list[str]:
    """The required networks of `cluster` that `host` does not carry."""
    required = [n.name for n in (await session.execute(
        select(Network).join(ClusterNetwork, ClusterNetwork.network_id == Network.id).where(
            ClusterNetwork.cluster_id == cluster.id, ClusterNetwork.required.is_(True))
    )).scalars() if NetworkUsage.MANAGEMENT.value not in n.usages]
    if not required:
        return []
    reported = parse_reported(host.reported_networks)
    if reported is not None:
        carried: list[str] = list(reported)
    else:
        carried = [n.name for a, n in await list_attachments(session, host.id) if a.applied]
    return missing_networks(required, carried)


async def judge_host(session: AsyncSession, host: Host) -> None:
    """Make `host` non operational for the networks it lacks, or up again without them."""
    if host.status not in _JUDGED:
        return
    cluster = await session.get(Cluster, host.cluster_id)
    if cluster is None:
        return
    missing = await host_lacks(session, host, cluster)
    if missing and host_action_allowed(HostAction.LACK_NETWORKS, host.status):
        host.status = status_after(HostAction.LACK_NETWORKS)
        host.status_detail = NETWORK_UNREACHABLE
        audit.record(session, f"Host {host.name} does not comply with the cluster "
                     f"{cluster.name} networks, the following networks are missing on host: "
                     f"'{', '.join(missing)}'", code=audit.HOST_NETWORKS_MISSING,
                     severity=LogSeverity.WARNING, host_id=host.id, cluster_id=cluster.id)
    elif not missing and host.status == HostStatus.NON_OPERATIONAL and \
            host.status_detail == NETWORK_UNREACHABLE:
        host.status, host.status_detail = status_after(HostAction.RECOVER), ""
        audit.record(session, f"Host {host.name} carries every required network of cluster "
                     f"{cluster.name} again: it is up", code=audit.HOST_UP, host_id=host.id,
                     cluster_id=cluster.id)


async def judge_cluster(session: AsyncSession, cluster: Cluster) -> None:
    """After a change of `cluster`'s networks: judge each of its hosts again (rows locked in
    id order, as the monitor locks them)."""
    hosts = (await session.execute(select(Host).where(
        Host.cluster_id == cluster.id, Host.status.in_(_JUDGED)).order_by(Host.id)
        .with_for_update())).scalars().all()
    for host in hosts:
        await judge_host(session, host)
