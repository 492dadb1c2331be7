"""Affinity groups of a cluster: adding, changing and removing them and their members.

Members are VMs and hosts of the group's cluster only (oVirt refuses others); a name is
unique within its cluster. The scheduler reads the groups (`scheduler.affinity_peers`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import (
    AffinityGroup,
    AffinityGroupHost,
    AffinityGroupVm,
    Cluster,
    Host,
    User,
    Vm,
)
from overt.engine.model.errors import Conflict, InvalidInput, NotFound
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref

MAX_NAME = 255


@dataclass
class RuleInput:
    enabled: bool | None = None
    positive: bool | None = None
    enforcing: bool | None = None


@dataclass
class AffinityGroupInput:
    """What a client sent (None: not given). `positive`/`enforcing`: oVirt 4.0's top-level
    fields, which mean the VMs rule."""

    name: str | None = None
    description: str | None = None
    priority: float | None = None
    vms_rule: RuleInput | None = None
    hosts_rule: RuleInput | None = None
    positive: bool | None = None
    enforcing: bool | None = None
    vms: list[Ref] | None = None
    hosts: list[Ref] | None = None


async def list_groups(session: AsyncSession, cluster_id: uuid.UUID) -> list[AffinityGroup]:
    await lookup.get(session, Cluster, cluster_id)
    return list((await session.execute(select(AffinityGroup).where(
        AffinityGroup.cluster_id == cluster_id).order_by(AffinityGroup.name))).scalars())


async def get_group(session: AsyncSession, cluster_id: uuid.UUID, group_id: uuid.UUID,
                    *, for_update: bool = False) -> AffinityGroup:
    await lookup.get(session, Cluster, cluster_id)
    group = await lookup.get(session, AffinityGroup, group_id, for_update=for_update)
    if group.cluster_id != cluster_id:
        raise NotFound(f"there is no affinity group with id {group_id} in this cluster")
    return group


async def group_vms(session: AsyncSession, group: AffinityGroup) -> list[Vm]:
    return list((await session.execute(
        select(Vm).join(AffinityGroupVm, AffinityGroupVm.vm_id == Vm.id)
        .where(AffinityGroupVm.group_id == group.id).order_by(Vm.name))).scalars())


async def group_hosts(session: AsyncSession, group: AffinityGroup) -> list[Host]:
    return list((await session.execute(
        select(Host).join(AffinityGroupHost, AffinityGroupHost.host_id == Host.id)
        .where(AffinityGroupHost.group_id == group.id).order_by(Host.name))).scalars())


async def add_group(session: AsyncSession, cluster_id: uuid.UUID, data: AffinityGroupInput,
                    user: User) -> AffinityGroup:
    cluster = await lookup.get(session, Cluster, cluster_id)
    if not data.name:
        raise InvalidInput("affinity_group.name is required")
    group = AffinityGroup(cluster_id=cluster.id, name="", description="", priority=1.0,
                          vms_rule_enabled=False, vms_rule_positive=True,
                          vms_rule_enforcing=False, hosts_rule_enabled=False,
                          hosts_rule_positive=True, hosts_rule_enforcing=False)
    vms, hosts = await _members(session, cluster, data)
    await _apply(session, group, data)
    session.add(group)
    await session.flush()
    await _set_members(session, group, vms, hosts)
    audit.record(session, f"Affinity group {group.name} was added to cluster {cluster.name} "
                 f"by {user.user_name}", code=audit.AFFINITY_GROUP_ADDED,
                 cluster_id=cluster.id, user_id=user.id)
    return group


async def update_group(session: AsyncSession, cluster_id: uuid.UUID, group_id: uuid.UUID,
                       data: AffinityGroupInput, user: User) -> AffinityGroup:
    group = await get_group(session, cluster_id, group_id, for_update=True)
    cluster = await lookup.get(session, Cluster, cluster_id)
    vms, hosts = await _members(session, cluster, data)
    await _apply(session, group, data)
    await _set_members(session, group, vms, hosts)
    audit.record(session, f"Affinity group {group.name} of cluster {cluster.name} was updated "
                 f"by {user.user_name}", code=audit.AFFINITY_GROUP_UPDATED,
                 cluster_id=cluster.id, user_id=user.id)
    return group


async def remove_group(session: AsyncSession, cluster_id: uuid.UUID, group_id: uuid.UUID,
                       user: User) -> None:
    group = await get_group(session, cluster_id, group_id, for_update=True)
    name = group.name
    await session.execute(delete(AffinityGroupVm).where(AffinityGroupVm.group_id == group.id))
    await session.execute(delete(AffinityGroupHost).where(
        AffinityGroupHost.group_id == group.id))
    await session.delete(group)
    audit.record(session, f"Affinity group {name} was removed by {user.user_name}",
                 code=audit.AFFINITY_GROUP_REMOVED, cluster_id=cluster_id, user_id=user.id)


async def add_vm(session: AsyncSession, cluster_id: uuid.UUID, group_id: uuid.UUID, ref: Ref,
                 user: User) -> Vm:
    return await _add_member(session, cluster_id, group_id, Vm, ref, user)


async def remove_vm(session: AsyncSession, cluster_id: uuid.UUID, group_id: uuid.UUID,
                    vm_id: uuid.UUID, user: User) -> None:
    await _remove_member(session, cluster_id, group_id, Vm, vm_id, user)


async def add_host(session: AsyncSession, cluster_id: uuid.UUID, group_id: uuid.UUID,
                   ref: Ref, user: User) -> Host:
    return await _add_member(session, cluster_id, group_id, Host, ref, user)


async def remove_host(session: AsyncSession, cluster_id: uuid.UUID, group_id: uuid.UUID,
                      host_id: uuid.UUID, user: User) -> None:
    await _remove_member(session, cluster_id, group_id, Host, host_id, user)


M = TypeVar("M", Vm, Host)


def _link(model: type[Vm] | type[Host], group_id: uuid.UUID, member_id: uuid.UUID
          ) -> AffinityGroupVm | AffinityGroupHost:
    if model is Vm:
        return AffinityGroupVm(group_id=group_id, vm_id=member_id)
    return AffinityGroupHost(group_id=group_id, host_id=member_id)


def _link_table(model: type[Vm] | type[Host]) -> type[AffinityGroupVm] | type[AffinityGroupHost]:
    return AffinityGroupVm if model is Vm else AffinityGroupHost


def _kind(model: type[Vm] | type[Host]) -> str:
    return "VM" if model is Vm else "Host"


async def _add_member(session: AsyncSession, cluster_id: uuid.UUID, group_id: uuid.UUID,
                      model: type[M], ref: Ref, user: User) -> M:
    group = await get_group(session, cluster_id, group_id, for_update=True)
    member = await _member(session, model, ref, group.cluster_id, _kind(model).lower())
    if await session.get(_link_table(model), (group.id, member.id)) is None:
        session.add(_link(model, group.id, member.id))
        _record_change(session, group, user, f"{_kind(model)} {member.name} was added to")
    return member


async def _remove_member(session: AsyncSession, cluster_id: uuid.UUID, group_id: uuid.UUID,
                         model: type[Vm] | type[Host], member_id: uuid.UUID,
                         user: User) -> None:
    group = await get_group(session, cluster_id, group_id, for_update=True)
    found = await session.get(_link_table(model), (group.id, member_id))
    if found is None:
        raise NotFound(f"{_kind(model)} {member_id} is not in affinity group {group.name}")
    member = await lookup.get(session, model, member_id)
    await session.delete(found)
    _record_change(session, group, user, f"{_kind(model)} {member.name} was removed from")


def _record_change(session: AsyncSession, group: AffinityGroup, user: User, what: str) -> None:
    audit.record(session, f"{what} affinity group {group.name} by {user.user_name}",
                 code=audit.AFFINITY_GROUP_UPDATED, cluster_id=group.cluster_id,
                 user_id=user.id)


# -- checking and applying input ------------------------------------------------------------

async def _apply(session: AsyncSession, group: AffinityGroup, data: AffinityGroupInput) -> None:
    """Check every given field, then set them (nothing is set when one is wrong)."""
    if data.name is not None:
        name = data.name.strip()
        if not name or len(name) > MAX_NAME:
            raise InvalidInput(f"affinity_group.name must be 1-{MAX_NAME} characters")
        same = select(func.count()).select_from(AffinityGroup).where(
            AffinityGroup.cluster_id == group.cluster_id,
            func.lower(AffinityGroup.name) == name.lower())
        if group.id is not None:
            same = same.where(AffinityGroup.id != group.id)
        if (await session.execute(same)).scalar_one():
            raise Conflict(f"Cannot add or update affinity group {name}: the cluster has an "
                           "affinity group of that name already")
    if data.priority is not None and data.priority < 0:
        raise InvalidInput("affinity_group.priority must be 0 or more")
    if data.name is not None:
        group.name = data.name.strip()
    if data.description is not None:
        group.description = data.description
    if data.priority is not None:
        group.priority = data.priority
    vms_rule = data.vms_rule or RuleInput()
    if data.vms_rule is None and (data.positive is not None or data.enforcing is not None):
        vms_rule = RuleInput(enabled=True)  # oVirt 4.0's form: the VMs rule, enabled
    positive = vms_rule.positive if vms_rule.positive is not None else data.positive
    enforcing = vms_rule.enforcing if vms_rule.enforcing is not None else data.enforcing
    _apply_rule(group, "vms_rule", RuleInput(vms_rule.enabled, positive, enforcing))
    if data.hosts_rule is not None:
        _apply_rule(group, "hosts_rule", data.hosts_rule)


def _apply_rule(group: AffinityGroup, prefix: str, rule: RuleInput) -> None:
    for part in ("enabled", "positive", "enforcing"):
        value = getattr(rule, part)
        if value is not None:
            setattr(group, f"{prefix}_{part}", value)


async def _members(session: AsyncSession, cluster: Cluster, data: AffinityGroupInput
                   ) -> tuple[list[Vm] | None, list[Host] | None]:
    vms = None if data.vms is None else [
        await _member(session, Vm, ref, cluster.id, "vm") for ref in data.vms]
    hosts = None if data.hosts is None else [
        await _member(session, Host, ref, cluster.id, "host") for ref in data.hosts]
    return vms, hosts


async def _member(session: AsyncSession, model: type[M], ref: Ref, cluster_id: uuid.UUID,
                  what: str) -> M:
    found = await lookup.resolve(session, model, ref, f"affinity_group.{what}")
    if found.cluster_id != cluster_id:
        kind = "VM" if model is Vm else "host"
        raise InvalidInput(f"{kind} {found.name} is in another cluster: an affinity group "
                           "holds VMs and hosts of its own cluster only")
    return found


async def _set_members(session: AsyncSession, group: AffinityGroup, vms: list[Vm] | None,
                       hosts: list[Host] | None) -> None:
    """Replace the members given (None: left as they are)."""
    if vms is not None:
        await session.execute(delete(AffinityGroupVm).where(
            AffinityGroupVm.group_id == group.id))
        for vm_id in dict.fromkeys(vm.id for vm in vms):
            session.add(AffinityGroupVm(group_id=group.id, vm_id=vm_id))
    if hosts is not None:
        await session.execute(delete(AffinityGroupHost).where(
            AffinityGroupHost.group_id == group.id))
        for host_id in dict.fromkeys(host.id for host in hosts):
            session.add(AffinityGroupHost(group_id=group.id, host_id=host_id))
