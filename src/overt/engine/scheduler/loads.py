"""Reading hosts' load from the database for the scheduler."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Cluster, Host, Vm
from overt.engine.model.node_states import ON_HOST
from overt.engine.model.status import HostStatus
from overt.engine.scheduler.placement import HostLoad, PlacementRequest, place


async def host_loads(session: AsyncSession, cluster_id: uuid.UUID,
                     *, excluding_vm: uuid.UUID | None = None) -> list[HostLoad]:
    placed = (
        select(Vm.host_id, func.sum(Vm.memory_mib).label("mib"), func.count().label("n"))
        .where(Vm.status.in_([s.value for s in ON_HOST]), Vm.host_id.is_not(None)))
    if excluding_vm is not None:
        placed = placed.where(Vm.id != excluding_vm)
    committed = placed.group_by(Vm.host_id).subquery()
    rows = await session.execute(
        select(Host, committed.c.mib, committed.c.n)
        .outerjoin(committed, committed.c.host_id == Host.id)
        .where(Host.cluster_id == cluster_id).order_by(Host.name))
    return [HostLoad(host_id=h.id, name=h.name, status=HostStatus(h.status),
                     memory_mib=h.memory_mib, committed_mib=int(mib or 0), vm_count=int(n or 0))
            for h, mib, n in rows]


async def choose_host(session: AsyncSession, vm: Vm, *, required: uuid.UUID | None = None,
                      required_reason: str = "") -> uuid.UUID:
    cluster = await session.get(Cluster, vm.cluster_id)
    overcommit = cluster.memory_overcommit_percent if cluster else 100
    request = PlacementRequest(vm_name=vm.name, memory_mib=vm.memory_mib,
                               overcommit_percent=overcommit,
                               required_host=required or vm.placement_host_id,
                               required_reason=required_reason or "the VM is pinned elsewhere")
    return place(request, await host_loads(session, vm.cluster_id, excluding_vm=vm.id)).host_id
