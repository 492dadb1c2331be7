"""Which users, groups, roles and permissions a caller may see (oVirt's user view of them).

Those who can give permissions somewhere (an administrator, a ClusterAdmin on their
cluster) must name users, groups and roles, so they see them all. Anyone else sees only
their own user, the groups they belong to and the roles they hold. A permission is seen
by whoever may see the object it is on, and by the user (or group member) it is given to;
one on the system only by those who manage permissions there.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db import tables as t
from overt.engine.identity.access import SYSTEM, Access, ancestors
from overt.engine.model.errors import NotFound

_GRANTING = ("manipulate_permissions", "manipulate_users")


def sees_directory(access: Access) -> bool:
    """Whether the caller sees every user and group (to name them in permissions)."""
    return access.superuser or any(access.anywhere(p) for p in _GRANTING)


def sees_roles(access: Access) -> bool:
    return sees_directory(access) or access.anywhere("manipulate_roles")


async def own_group_ids(session: AsyncSession, user: t.User) -> set[uuid.UUID]:
    """The engine's groups the user belongs to (through the directory, nested ones too)."""
    if not user.directory_groups:
        return set()
    return set((await session.execute(select(t.Group.id).where(
        t.Group.domain == user.domain,
        t.Group.external_id.in_(user.directory_groups)))).scalars())


def users_condition(access: Access) -> ColumnElement[bool]:
    return true() if sees_directory(access) else t.User.id == access.user.id


async def visible_user(session: AsyncSession, access: Access, user_id: uuid.UUID) -> t.User:
    """The user with `user_id`, when the caller may see them (others are not found)."""
    found = (await session.execute(select(t.User).where(
        t.User.id == user_id, users_condition(access)))).scalar_one_or_none()
    if found is None:
        raise NotFound(f"there is no user with id {user_id}")
    return found


async def visible_group(session: AsyncSession, access: Access, group_id: uuid.UUID
                        ) -> t.Group:
    groups = await own_group_ids(session, access.user)
    found = (await session.execute(select(t.Group).where(
        t.Group.id == group_id, groups_condition(access, groups)))).scalar_one_or_none()
    if found is None:
        raise NotFound(f"there is no group with id {group_id}")
    return found


def groups_condition(access: Access, own_groups: set[uuid.UUID]) -> ColumnElement[bool]:
    return true() if sees_directory(access) else t.Group.id.in_(own_groups)


async def roles_condition(session: AsyncSession, access: Access
                          ) -> tuple[ColumnElement[bool], set[uuid.UUID] | None]:
    """(a condition on custom roles, the ids of the predefined roles seen: None for all)."""
    if sees_roles(access):
        return true(), None
    groups = await own_group_ids(session, access.user)
    held = set((await session.execute(select(t.Permission.role_id).where(or_(
        t.Permission.user_id == access.user.id,
        t.Permission.group_id.in_(groups))))).scalars())
    return t.Role.id.in_(held), held


@dataclass
class PermissionView:
    """Decides, permission by permission, whether the caller sees it (objects' ancestry
    looked up once each)."""

    session: AsyncSession
    access: Access
    own_groups: set[uuid.UUID]
    _chains: dict[tuple[str, uuid.UUID], frozenset[str]] = field(default_factory=dict)

    @classmethod
    async def of(cls, session: AsyncSession, access: Access) -> PermissionView:
        return cls(session, access, await own_group_ids(session, access.user))

    async def sees(self, p: t.Permission) -> bool:
        if self.access.superuser or p.user_id == self.access.user.id or (
                p.group_id is not None and p.group_id in self.own_groups):
            return True
        if p.object_type == SYSTEM or p.object_id is None:
            return "manipulate_permissions" in self.access.permits_on([(SYSTEM, None)])
        key = (p.object_type, p.object_id)
        if key not in self._chains:
            self._chains[key] = self.access.permits_on(
                await ancestors(self.session, p.object_type, p.object_id))
        return bool(self._chains[key])

    async def filter(self, rows: list[t.Permission]) -> list[t.Permission]:
        return [p for p in rows if await self.sees(p)]
