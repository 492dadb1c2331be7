"""Reading hosts' load from the database for the scheduler, and reserving a host."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Cluster, Host, Vm
from overt.engine.model.errors import NoHostAvailable
from overt.engine.model.node_states import ON_HOST
from overt.engine.model.status import HostStatus
from overt.engine.scheduler.affinity_peers import affinity_constraints
from overt.engine.scheduler.placement import HostLoad, PlacementRequest, place


def _committed(excluding_vm: uuid.UUID | None, only: uuid.UUID | None = None) -> Any:
    """Memory and VM count placed on each host (or on host `only`), as a subquery."""
    running = select(Vm.host_id.label("host_id"), Vm.memory_mib.label("memory_mib")).where(
        Vm.status.in_(ON_HOST), Vm.host_id.is_not(None))
    # A migrating VM holds room on its destination too (the migration's reservation).
    incoming = select(Vm.migration_host_id.label("host_id"),
                      Vm.memory_mib.label("memory_mib")).where(
        Vm.migration_host_id.is_not(None))
    if only is not None:  # one host's VMs, not the fleet's (a start's check under lock)
        running = running.where(Vm.host_id == only)
        incoming = incoming.where(Vm.migration_host_id == only)
    if excluding_vm is not None:
        running = running.where(Vm.id != excluding_vm)
        incoming = incoming.where(Vm.id != excluding_vm)
    both = running.union_all(incoming).subquery()
    return (select(both.c.host_id, func.sum(both.c.memory_mib).label("mib"),
                   func.count().label("n")).group_by(both.c.host_id).subquery())


async def host_loads(session: AsyncSession, cluster_id: uuid.UUID,
                     *, excluding_vm: uuid.UUID | None = None,
                     only: uuid.UUID | None = None) -> list[HostLoad]:
    committed = _committed(excluding_vm, only)
    # Only the columns placement needs: a fleet's hosts carry certificates and capabilities.
    query = (
        select(Host.id, Host.name, Host.status, Host.memory_mib, committed.c.mib, committed.c.n)
        .outerjoin(committed, committed.c.host_id == Host.id)
        .where(Host.cluster_id == cluster_id).order_by(Host.name))
    if only is not None:
        query = query.where(Host.id == only)
    rows = await session.execute(query)
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
        .where(Host.cluster_id == cluster_id, Host.status == HostStatus.UP,
               free >= memory_mib)
        .order_by(free.desc(), func.coalesce(committed.c.n, 0).asc(), Host.name.desc())
        .limit(1))
    return chosen.scalar_one_or_none()


def placement_hosts(vm: Vm) -> frozenset[uuid.UUID]:
    """The hosts the VM's placement policy allows (empty: any host of its cluster)."""
    return frozenset(uuid.UUID(str(host_id)) for host_id in vm.placement_hosts or ())


async def _request(session: AsyncSession, vm: Vm, required: uuid.UUID | None,
                   required_reason: str, leaving: uuid.UUID | None = None,
                   draining: bool = False) -> PlacementRequest:
    cluster = await session.get(Cluster, vm.cluster_id)
    overcommit = cluster.memory_overcommit_percent if cluster else 100
    affinity = await affinity_constraints(session, vm, draining=leaving if draining else None)
    return PlacementRequest(vm_name=vm.name, memory_mib=vm.memory_mib,
                            overcommit_percent=overcommit, required_host=required,
                            required_reason=required_reason or "the VM must run elsewhere",
                            allowed_hosts=placement_hosts(vm), leaving_host=leaving,
                            affinity=affinity)


async def choose_host(session: AsyncSession, vm: Vm, *, required: uuid.UUID | None = None,
                      required_reason: str = "", leaving: uuid.UUID | None = None,
                      draining: bool = False) -> uuid.UUID:
    """The host `place()` chooses for `vm` now (NoHostAvailable, with reasons, if none);
    `leaving`: the host a migration leaves, never chosen; `draining`: every VM leaves it
    (a maintenance), so the VM's affinity peers on it move too."""
    return await _choose(session, vm, await _request(session, vm, required, required_reason,
                                                      leaving, draining))


async def _choose(session: AsyncSession, vm: Vm, request: PlacementRequest) -> uuid.UUID:
    if (request.required_host is None and not request.allowed_hosts
            and request.leaving_host is None and not request.affinity):
        # One query instead of a thousand hosts in Python; when no host fits, `place` says
        # why each was left out.
        found = await roomiest_host(session, vm.cluster_id, memory_mib=vm.memory_mib,
                                    overcommit_percent=request.overcommit_percent,
                                    excluding_vm=vm.id)
        if found is not None:
            return found
    return place(request, await host_loads(session, vm.cluster_id, excluding_vm=vm.id)).host_id


# Another start may take the chosen host's last room between choosing and locking it:
# then the choice is made again, a few times, before the VM is refused.
RESERVE_ATTEMPTS = 5


async def reserve_host(session: AsyncSession, vm: Vm, *, required: uuid.UUID | None = None,
                       required_reason: str = "", leaving: uuid.UUID | None = None,
                       draining: bool = False) -> uuid.UUID:
    """Choose a host for `vm` and lock its row until the caller's transaction ends, having
    checked under that lock that the VM still fits.

    The caller then records the VM on the host (`host_id`, a status of `ON_HOST`), which
    is the reservation: the host's memory counts the VM from that commit on, so a start
    that locks the host next sees it (and, for its affinity groups, where its peers run:
    the rules are read again under the lock). Lock order: the host before the VM, as the
    jobs' locks are ordered (the monitor holds host rows while it updates their VMs).
    """
    request = await _request(session, vm, required, required_reason, leaving, draining)
    for _attempt in range(RESERVE_ATTEMPTS):
        host_id = await _choose(session, vm, request)
        await session.execute(select(Host.id).where(Host.id == host_id).with_for_update())
        loads = await host_loads(session, vm.cluster_id, excluding_vm=vm.id, only=host_id)
        if request.affinity:
            request = await _request(session, vm, required, required_reason, leaving, draining)
        try:
            return place(request, loads).host_id
        except NoHostAvailable:
            continue  # taken meanwhile; choose again (the lock is kept: it is released at commit)
    return place(request, await host_loads(session, vm.cluster_id, excluding_vm=vm.id)).host_id
