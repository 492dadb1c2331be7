"""Reading hosts' load from the database for the scheduler."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Cluster, Host, Vm
from overt.engine.model.node_states import ON_HOST
from overt.engine.model.status import HostStatus
from overt.engine.scheduler.placement import HostLoad, PlacementRequest, place


def _committed(excluding_vm: uuid.UUID | None) -> Any:
    """Memory and VM count placed on each host, as a subquery."""
    placed = (
        select(Vm.host_id, func.sum(Vm.memory_mib).label("mib"), func.count().label("n"))
        .where(Vm.status.in_([s.value for s in ON_HOST]), Vm.host_id.is_not(None)))
    if excluding_vm is not None:
        placed = placed.where(Vm.id != excluding_vm)
    return placed.group_by(Vm.host_id).subquery()


async def host_loads(session: AsyncSession, cluster_id: uuid.UUID,
                     *, excluding_vm: uuid.UUID | None = None) -> list[HostLoad]:
    committed = _committed(excluding_vm)
    # Only the columns placement needs: a fleet's hosts carry certificates and capabilities.
    rows = await session.execute(
        select(Host.id, Host.name, Host.status, Host.memory_mib, committed.c.mib, committed.c.n)
        .outerjoin(committed, committed.c.host_id == Host.id)
        .where(Host.cluster_id == cluster_id).order_by(Host.name))
    return [HostLoad(host_id=host_id, name=name, status=HostStatus(status),
                     memory_mib=memory_mib, committed_mib=int(mib or 0), vm_count=int(n or 0))
            for host_id, name, status, memory_mib, mib, n in rows]


async def roomiest_host(session: AsyncSession, cluster_id: uuid.UUID, *, memory_mib: int,
                        overcommit_percent: int, excluding_vm: uuid.UUID | None = None
                        ) -> uuid.UUID | None:
    """`place()`'s choice computed by the database: the up host with the most free memory
    that fits the VM (fewest VMs, then last name, on a tie); None when no host fits."""
    committed = _committed(excluding_vm)
    free = (Host.memory_mib * overcommit_percent / 100) - func.coalesce(committed.c.mib, 0)
    chosen = await session.execute(
        select(Host.id).outerjoin(committed, committed.c.host_id == Host.id)
        .where(Host.cluster_id == cluster_id, Host.status == HostStatus.UP.value,
               free >= memory_mib)
        .order_by(free.desc(), func.coalesce(committed.c.n, 0).asc(), Host.name.desc())
        .limit(1))
    return chosen.scalar_one_or_none()


async def choose_host(session: AsyncSession, vm: Vm, *, required: uuid.UUID | None = None,
                      required_reason: str = "") -> uuid.UUID:
    cluster = await session.get(Cluster, vm.cluster_id)
    overcommit = cluster.memory_overcommit_percent if cluster else 100
    request = PlacementRequest(vm_name=vm.name, memory_mib=vm.memory_mib,
                               overcommit_percent=overcommit,
                               required_host=required or vm.placement_host_id,
                               required_reason=required_reason or "the VM is pinned elsewhere")
    if request.required_host is None:
        # One query instead of a thousand hosts in Python; when no host fits, `place` says
        # why each was left out.
        found = await roomiest_host(session, vm.cluster_id, memory_mib=vm.memory_mib,
                                    overcommit_percent=overcommit, excluding_vm=vm.id)
        if found is not None:
            return found
    return place(request, await host_loads(session, vm.cluster_id, excluding_vm=vm.id)).host_id
