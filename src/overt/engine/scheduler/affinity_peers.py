"""Reading the affinity groups a VM is in, and where their VMs run, as the scheduler's
constraints."""

from __future__ import annotations

import uuid
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import AffinityGroup, AffinityGroupHost, AffinityGroupVm, Vm
from overt.engine.model.node_states import ON_HOST
from overt.engine.scheduler.affinity import AffinityConstraint, RuleKind


async def affinity_constraints(session: AsyncSession, vm: Vm, *,
                               draining: uuid.UUID | None = None
                               ) -> tuple[AffinityConstraint, ...]:
    """The enabled rules of every group `vm` is in, with where their VMs run now.

    A peer VM counts on its host and, while it migrates, on its destination too (where it
    will be). `draining`: a host all of whose VMs are leaving (a maintenance): a peer still
    on it is moving with the VM, so a positive rule follows it to its destination instead.
    """
    groups = list((await session.execute(
        select(AffinityGroup).join(AffinityGroupVm, AffinityGroupVm.group_id == AffinityGroup.id)
        .where(AffinityGroupVm.vm_id == vm.id, AffinityGroup.cluster_id == vm.cluster_id)
        .order_by(AffinityGroup.priority.desc(), AffinityGroup.name))).scalars())
    constraints: list[AffinityConstraint] = []
    for group in groups:
        if group.vms_rule_enabled:
            constraints.append(AffinityConstraint(
                group=group.name, kind=RuleKind.VMS, positive=group.vms_rule_positive,
                enforcing=group.vms_rule_enforcing, priority=group.priority,
                peers=await _peer_hosts(session, group, vm.id, group.vms_rule_positive,
                                        draining)))
        if group.hosts_rule_enabled:
            hosts = (await session.execute(select(AffinityGroupHost.host_id).where(
                AffinityGroupHost.group_id == group.id))).scalars()
            constraints.append(AffinityConstraint(
                group=group.name, kind=RuleKind.HOSTS, positive=group.hosts_rule_positive,
                enforcing=group.hosts_rule_enforcing, priority=group.priority,
                peers={host_id: () for host_id in hosts}))
    return tuple(constraints)


async def _peer_hosts(session: AsyncSession, group: AffinityGroup, vm_id: uuid.UUID,
                      positive: bool, draining: uuid.UUID | None
                      ) -> dict[uuid.UUID, tuple[str, ...]]:
    rows = await session.execute(
        select(Vm.name, Vm.host_id, Vm.migration_host_id)
        .join(AffinityGroupVm, AffinityGroupVm.vm_id == Vm.id)
        .where(AffinityGroupVm.group_id == group.id, Vm.id != vm_id, Vm.status.in_(ON_HOST),
               Vm.host_id.is_not(None)))
    found: dict[uuid.UUID, list[str]] = defaultdict(list)
    for name, host_id, migration_host_id in rows:
        if positive:
            # Where the peer will be: its destination while it migrates.
            where = migration_host_id or host_id
            if where is None or where == draining:
                continue  # it leaves the host too, and the VM may lead the way
            found[where].append(name)
        else:
            for where in (host_id, migration_host_id):
                if where is not None:
                    found[where].append(name)
    return {host: tuple(sorted(names)) for host, names in found.items()}
