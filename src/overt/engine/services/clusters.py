"""Clusters: add to a data center, update, remove when no host, VM or template uses them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Cluster, DataCenter, Host, Template, User, Vm
from overt.engine.model import fencing_policy, migration_options
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.model.fencing_policy import FencingPolicy
from overt.engine.model.migration_options import MigrationOptions
from overt.engine.model.names import check_name
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref
from overt.engine.services import macpools


@dataclass
class ClusterInput:
    """What a client may set on a cluster; None leaves a field as it is."""

    name: str | None = None
    description: str | None = None
    data_center: Ref | None = None
    cpu_type: str | None = None
    memory_overcommit_percent: int | None = None
    mac_pool: Ref | None = None
    migration: MigrationOptions | None = None
    # Fields of the fencing policy to change (`FencingPolicy.updated`); None: unchanged.
    fencing_policy: dict[str, Any] | None = None


def _check_overcommit(percent: int | None) -> None:
    if percent is not None and not 1 <= percent <= 1000:
        raise InvalidInput("cluster.memory_policy.over_commit.percent must be between 1 and "
                           f"1000, not {percent}")


async def add_cluster(session: AsyncSession, data: ClusterInput, user: User) -> Cluster:
    name = check_name("cluster", data.name or "")
    _check_overcommit(data.memory_overcommit_percent)
    migration = migration_options.check(data.migration or MigrationOptions(),
                                        "cluster.migration")
    fencing = _fencing(None, data.fencing_policy or {})
    dc = await lookup.resolve(session, DataCenter, data.data_center, "cluster.data_center")
    if await lookup.name_taken(session, Cluster, name):
        raise Conflict(f"Cannot add Cluster. The name {name!r} is already in use.")
    cluster = Cluster(id=uuid.uuid4(), name=name, description=data.description or "",
                      data_center_id=dc.id, cpu_type=data.cpu_type or "",
                      memory_overcommit_percent=data.memory_overcommit_percent or 100,
                      migration=migration.to_json(), fencing_policy=fencing)
    session.add(cluster)
    await session.flush()
    if data.mac_pool is not None:
        await macpools.assign(session, cluster, data.mac_pool)
    audit.record(session, f"Cluster {name} was added by {user.user_name}",
                 code=audit.CLUSTER_ADDED, cluster_id=cluster.id, data_center_id=dc.id,
                 user_id=user.id)
    return cluster


async def _in_use(session: AsyncSession, cluster: Cluster) -> str | None:
    """What still uses the cluster, said for the administrator; None if nothing does."""
    hosts = await lookup.count(session, Host, Host.cluster_id == cluster.id)
    vms = await lookup.count(session, Vm, Vm.cluster_id == cluster.id)
    templates = await lookup.count(session, Template, Template.cluster_id == cluster.id)
    parts = [f"{n} {what}" for n, what in ((hosts, "host(s)"), (vms, "VM(s)"),
                                            (templates, "template(s)")) if n]
    return ", ".join(parts) or None


async def update_cluster(session: AsyncSession, cluster_id: uuid.UUID, data: ClusterInput,
                         user: User) -> Cluster:
    cluster = await lookup.get(session, Cluster, cluster_id, for_update=True)
    _check_overcommit(data.memory_overcommit_percent)
    migration = None
    if data.migration is not None:
        migration = migration_options.check(MigrationOptions.from_json(
            cluster.migration).updated(data.migration), "cluster.migration")
    fencing = None
    if data.fencing_policy is not None:
        fencing = _fencing(cluster.fencing_policy, data.fencing_policy)
    name = cluster.name
    if data.name is not None:
        name = check_name("cluster", data.name)
        if await lookup.name_taken(session, Cluster, name, other_than=cluster.id):
            raise Conflict(f"Cannot edit Cluster. The name {name!r} is already in use.")
    if data.data_center is not None:
        dc = await lookup.resolve(session, DataCenter, data.data_center, "cluster.data_center")
        if dc.id != cluster.data_center_id:
            used = await _in_use(session, cluster)
            if used:
                raise Conflict(f"Cannot move Cluster {cluster.name} to another data center: "
                               f"{used} use it.")
            cluster.data_center_id = dc.id
    cluster.name = name
    if data.mac_pool is not None:
        await macpools.assign(session, cluster, data.mac_pool)
    if data.description is not None:
        cluster.description = data.description
    if data.cpu_type is not None:
        cluster.cpu_type = data.cpu_type
    if data.memory_overcommit_percent is not None:
        cluster.memory_overcommit_percent = data.memory_overcommit_percent
    if migration is not None:
        cluster.migration = migration.to_json()
    if fencing is not None:
        cluster.fencing_policy = fencing
    audit.record(session, f"Cluster {cluster.name} was updated by {user.user_name}",
                 code=audit.CLUSTER_UPDATED, cluster_id=cluster.id, user_id=user.id)
    return cluster


async def remove_cluster(session: AsyncSession, cluster_id: uuid.UUID, user: User) -> None:
    cluster = await lookup.get(session, Cluster, cluster_id, for_update=True)
    used = await _in_use(session, cluster)
    if used:
        raise Conflict(f"Cannot remove Cluster {cluster.name}: {used} still use it; "
                       "remove or move them first.")
    audit.record(session, f"Cluster {cluster.name} was removed by {user.user_name}",
                 code=audit.CLUSTER_REMOVED, data_center_id=cluster.data_center_id,
                 user_id=user.id)
    await session.delete(cluster)


def _fencing(stored: dict[str, Any] | None, changes: dict[str, Any]) -> dict[str, Any]:
    """The policy to store: only the fields a client ever set, so that what it left unset
    (the grace) follows the engine's settings; checked as the whole policy it makes."""
    given = {**(stored or {}), **{k: v for k, v in changes.items() if v is not None}}
    fencing_policy.check(FencingPolicy.from_json(given))
    return given
