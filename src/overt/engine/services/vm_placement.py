"""A VM's placement policy (oVirt's `placement_policy`): the hosts it may run on and
whether it may move once it runs. Stored on the VM; the scheduler honours it when a VM
starts, migrates, or leaves a host going to maintenance."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Host, Vm
from overt.engine.model.errors import InvalidInput
from overt.engine.model.status import VmAffinity
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref

AFFINITIES = ", ".join(a.value for a in VmAffinity)


async def set_placement_policy(session: AsyncSession, vm: Vm, *, hosts: list[Ref] | None,
                               affinity: str | None) -> bool:
    """Apply what was given (None: left as it is); True when something changed. Hosts must
    be of the VM's cluster: a VM never runs outside it."""
    changed = False
    if affinity is not None:
        if affinity not in {a.value for a in VmAffinity}:
            raise InvalidInput(f"vm.placement_policy.affinity must be one of {AFFINITIES}, "
                               f"not {affinity!r}")
        changed |= vm.placement_affinity != affinity
        vm.placement_affinity = affinity
    if hosts is not None:
        ids: list[str] = []
        for ref in hosts:
            host = await lookup.resolve(session, Host, ref, "vm.placement_policy.host")
            if host.cluster_id != vm.cluster_id:
                raise InvalidInput(f"vm.placement_policy.host {host.name} is not in the VM's "
                                   "cluster: a VM runs only on hosts of its cluster")
            if str(host.id) not in ids:
                ids.append(str(host.id))
        changed |= list(vm.placement_hosts or []) != ids
        vm.placement_hosts = ids
    return changed


async def forget_placement_host(session: AsyncSession, host: Host) -> None:
    """A removed host leaves the placement policies naming it (a VM whose only allowed
    host it was may then run on any host of its cluster, as oVirt does)."""
    named = (await session.execute(select(Vm).where(Vm.cluster_id == host.cluster_id)
                                   .with_for_update())).scalars()
    for vm in named:
        if str(host.id) in (vm.placement_hosts or []):
            vm.placement_hosts = [h for h in vm.placement_hosts if h != str(host.id)]
