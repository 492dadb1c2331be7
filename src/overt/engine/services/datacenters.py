"""Data centers: add (with their management network), update, remove when empty."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.seed import MANAGEMENT_NETWORK
from overt.engine.db.tables import (
    Cluster,
    DataCenter,
    Network,
    StorageDomain,
    User,
    VmNic,
    VnicProfile,
)
from overt.engine.model.errors import Conflict
from overt.engine.model.names import check_name
from overt.engine.model.status import DataCenterStatus, NetworkUsage
from overt.engine.queries import lookup

MANAGEMENT_USAGES = [NetworkUsage.VM.value, NetworkUsage.MANAGEMENT.value,
                     NetworkUsage.DISPLAY.value, NetworkUsage.MIGRATION.value,
                     NetworkUsage.DEFAULT_ROUTE.value]


@dataclass
class DataCenterInput:
    """What a client may set on a data center; None leaves a field as it is."""

    name: str | None = None
    description: str | None = None
    local: bool | None = None


async def add_data_center(session: AsyncSession, data: DataCenterInput, user: User) -> DataCenter:
    """A new data center gets its own management network, as in oVirt."""
    name = check_name("data_center", data.name or "")
    if await lookup.name_taken(session, DataCenter, name):
        raise Conflict(f"Cannot add Data Center. The name {name!r} is already in use.")
    dc = DataCenter(id=uuid.uuid4(), name=name, description=data.description or "",
                    local=bool(data.local), status=DataCenterStatus.UNINITIALIZED)
    session.add(dc)
    await session.flush()
    network = Network(id=uuid.uuid4(), name=MANAGEMENT_NETWORK, description="Management Network",
                      data_center_id=dc.id, usages=list(MANAGEMENT_USAGES),
                      bridge=MANAGEMENT_NETWORK)
    session.add(network)
    await session.flush()
    session.add(VnicProfile(id=uuid.uuid4(), name=MANAGEMENT_NETWORK, network_id=network.id))
    audit.record(session, f"Data Center {name} was added by {user.user_name}",
                 code=audit.DATA_CENTER_ADDED, data_center_id=dc.id, user_id=user.id)
    return dc


async def update_data_center(session: AsyncSession, dc_id: uuid.UUID, data: DataCenterInput,
                             user: User) -> DataCenter:
    dc = await lookup.get(session, DataCenter, dc_id, for_update=True)
    name = dc.name
    if data.name is not None:
        name = check_name("data_center", data.name)
        if await lookup.name_taken(session, DataCenter, name, other_than=dc.id):
            raise Conflict(f"Cannot edit Data Center. The name {name!r} is already in use.")
    if data.local is not None and data.local != dc.local:
        if await lookup.count(session, Cluster, Cluster.data_center_id == dc.id) or \
                await lookup.count(session, StorageDomain, StorageDomain.data_center_id == dc.id):
            raise Conflict(f"Cannot edit Data Center {dc.name}: its storage type (local or "
                           "shared) cannot change while it has clusters or storage domains.")
        dc.local = data.local
    dc.name = name
    if data.description is not None:
        dc.description = data.description
    audit.record(session, f"Data Center {dc.name} was updated by {user.user_name}",
                 code=audit.DATA_CENTER_UPDATED, data_center_id=dc.id, user_id=user.id)
    return dc


async def remove_data_center(session: AsyncSession, dc_id: uuid.UUID, user: User) -> None:
    """Only an empty data center goes (its networks go with it)."""
    dc = await lookup.get(session, DataCenter, dc_id, for_update=True)
    clusters = await lookup.count(session, Cluster, Cluster.data_center_id == dc.id)
    if clusters:
        raise Conflict(f"Cannot remove Data Center {dc.name}: it still has {clusters} "
                       "cluster(s); remove or move them first.")
    domains = await lookup.count(session, StorageDomain, StorageDomain.data_center_id == dc.id)
    if domains:
        raise Conflict(f"Cannot remove Data Center {dc.name}: {domains} storage domain(s) are "
                       "still attached to it; remove them first.")
    networks = (await session.execute(select(Network).where(Network.data_center_id == dc.id))
                ).scalars().all()
    profiles = select(VnicProfile.id).where(
        VnicProfile.network_id.in_([n.id for n in networks]))
    nics = await lookup.count(session, VmNic, VmNic.vnic_profile_id.in_(profiles))
    if nics:
        raise Conflict(f"Cannot remove Data Center {dc.name}: {nics} VM NIC(s) use its "
                       "networks; remove them from those networks first.")
    for network in networks:
        await session.execute(delete(VnicProfile).where(
            VnicProfile.network_id == network.id))
        await session.delete(network)
    await session.flush()
    audit.record(session, f"Data Center {dc.name} was removed by {user.user_name}",
                 code=audit.DATA_CENTER_REMOVED, user_id=user.id)
    await session.delete(dc)
