"""What a user may do: their grants (own and through groups), inherited down the object tree.

A permission gives a role on the system or on one object; it holds for that object and
everything beneath it (system -> data center -> cluster -> host / VM / template;
data center -> storage domain -> disk; data center -> network). One `Access` is
loaded per request, so a permission removed takes effect on the next request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, false, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db import tables as t
from overt.engine.identity.roles import PERMITS, PREDEFINED, SUPER_USER

SYSTEM = "system"
# Object kinds, the table of each, and the column naming its parent (with the parent's kind).
KINDS: dict[str, type[t.Base]] = {
    "data_center": t.DataCenter, "cluster": t.Cluster, "host": t.Host, "vm": t.Vm,
    "template": t.Template, "storage_domain": t.StorageDomain, "network": t.Network,
    "disk": t.Disk,
}
PARENT: dict[str, tuple[str, str]] = {
    "cluster": ("data_center_id", "data_center"), "host": ("cluster_id", "cluster"),
    "vm": ("cluster_id", "cluster"), "template": ("cluster_id", "cluster"),
    "storage_domain": ("data_center_id", "data_center"),
    "network": ("data_center_id", "data_center"), "disk": ("storage_domain_id", "storage_domain"),
}
BLANK_TEMPLATE = uuid.UUID(int=0)


@dataclass(frozen=True)
class Grant:
    object_type: str
    object_id: uuid.UUID | None
    permits: frozenset[str]


@dataclass
class Access:
    user: t.User
    grants: list[Grant] = field(default_factory=list)

    @property
    def superuser(self) -> bool:
        """The installation's administrator, or a SuperUser on the system."""
        return self.user.administrator or any(
            g.object_type == SYSTEM and "configure_engine" in g.permits for g in self.grants)

    @property
    def system_wide(self) -> bool:
        """Some role on the system: every object is in view."""
        return self.superuser or any(g.object_type == SYSTEM for g in self.grants)

    def anywhere(self, permit: str) -> bool:
        return self.superuser or any(permit in g.permits for g in self.grants)

    def ids(self, kind: str) -> set[uuid.UUID]:
        return {g.object_id for g in self.grants if g.object_type == kind and g.object_id}

    def permits_on(self, chain: list[tuple[str, uuid.UUID | None]]) -> frozenset[str]:
        """Permits held on an object, given its chain of ancestors (from `ancestors`)."""
        if self.superuser:
            return SUPER_USER.permits
        held: set[str] = set()
        for grant in self.grants:
            if (grant.object_type, grant.object_id) in chain:
                held |= grant.permits
        return frozenset(held)

    def visible(self, kind: str) -> ColumnElement[bool]:
        """A condition on `kind`'s table: the rows this user may see."""
        if self.system_wide:
            return true()
        condition = _visible(self, kind)
        return false() if condition is None else condition


def _visible(access: Access, kind: str) -> ColumnElement[bool] | None:
    table: Any = KINDS[kind]
    conditions: list[ColumnElement[bool]] = []
    own = access.ids(kind)
    if own:
        conditions.append(table.id.in_(own))
    if kind == "template":
        conditions.append(table.id == BLANK_TEMPLATE)
    if kind in PARENT:
        column, parent_kind = PARENT[kind]
        parent: Any = KINDS[parent_kind]
        condition = _visible(access, parent_kind)
        if condition is not None:
            conditions.append(getattr(table, column).in_(select(parent.id).where(condition)))
    return or_(*conditions) if conditions else None


def role_permits(role_id: uuid.UUID, custom: dict[uuid.UUID, t.Role]) -> frozenset[str]:
    predefined = PREDEFINED.get(role_id)
    if predefined is not None:
        return predefined.permits
    role = custom.get(role_id)
    if role is None:
        return frozenset()
    return frozenset(PERMITS[i].name for i in role.permits if i in PERMITS)


async def load_access(session: AsyncSession, user: t.User) -> Access:
    """The user's grants: permissions given to them and to the groups they belong to."""
    groups = select(t.Group.id).where(t.Group.domain == user.domain,
                                      t.Group.external_id.in_(user.directory_groups or []))
    rows = (await session.execute(select(t.Permission).where(
        or_(t.Permission.user_id == user.id, t.Permission.group_id.in_(groups))))).scalars()
    permissions = list(rows)
    custom_ids = {p.role_id for p in permissions if p.role_id not in PREDEFINED}
    custom = {r.id: r for r in (await session.execute(
        select(t.Role).where(t.Role.id.in_(custom_ids)))).scalars()} if custom_ids else {}
    return Access(user, [Grant(p.object_type, p.object_id, role_permits(p.role_id, custom))
                         for p in permissions])


async def ancestors(session: AsyncSession, kind: str, object_id: uuid.UUID
                    ) -> list[tuple[str, uuid.UUID | None]]:
    """The object and everything above it, up to the system."""
    chain: list[tuple[str, uuid.UUID | None]] = [(kind, object_id)]
    current_kind, current_id = kind, object_id
    while current_kind in PARENT:
        column, parent_kind = PARENT[current_kind]
        table: Any = KINDS[current_kind]
        parent_id = (await session.execute(select(getattr(table, column)).where(
            table.id == current_id))).scalar_one_or_none()
        if parent_id is None:
            break
        chain.append((parent_kind, parent_id))
        current_kind, current_id = parent_kind, parent_id
    chain.append((SYSTEM, None))
    return chain


def visible_history(access: Access, table: type[t.AuditEvent] | type[t.Job]
                    ) -> ColumnElement[bool]:
    """Which audit events and jobs a user without a role on the system sees: their own,
    and (events) those about VMs and hosts they may see."""
    if access.system_wide:
        return true()
    if table is t.Job:
        return t.Job.owner_id == access.user.id
    about_vm = t.AuditEvent.vm_id.in_(select(t.Vm.id).where(access.visible("vm")))
    about_host = t.AuditEvent.host_id.in_(select(t.Host.id).where(access.visible("host")))
    return or_(t.AuditEvent.user_id == access.user.id, about_vm, about_host)
