"""Writes of the access model: directory users and groups, custom roles, permissions (audited)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Base, Group, Permission, Role, User
from overt.engine.identity.access import KINDS, SYSTEM
from overt.engine.identity.directories import Directories
from overt.engine.identity.directory_users import remember_directory_user
from overt.engine.identity.ldap_directory import DirectoryUser
from overt.engine.identity.profiles import INTERNAL
from overt.engine.identity.roles import (
    PERMITS,
    PERMITS_BY_NAME,
    PREDEFINED,
    USER_VM_MANAGER,
    RoleDef,
)
from overt.engine.model.errors import Conflict, InvalidInput, NotFound
from overt.engine.queries.lookup import Ref

MAX_NAME = 255


def _checked_name(value: str, what: str) -> str:
    if not value or len(value) > MAX_NAME or not value.isprintable():
        raise InvalidInput(f"{what} must be 1 to {MAX_NAME} printable characters")
    return value


async def _directory_user(directories: Directories, profile: str, login: str
                          ) -> DirectoryUser:
    found = await directories.find_user(profile, login)
    if found is None:
        raise NotFound(f"there is no user {login!r} in the directory of profile {profile}")
    return found


async def add_user(session: AsyncSession, directories: Directories, user_name: str,
                   profile: str, actor: User) -> User:
    """Add a directory user (so permissions can name them before their first sign-in)."""
    login = _checked_name(user_name, "user_name").rpartition("@")[0] or user_name
    if profile == INTERNAL:
        raise InvalidInput("internal users are created with `overt user add`, not from a "
                           "directory")
    found = await _directory_user(directories, profile, login)
    user = await remember_directory_user(session, profile, found)
    audit.record(session, f"User {user.user_name} was added by {actor.user_name}",
                 code=audit.USER_ADDED, user_id=actor.id)
    return user


async def remove_user(session: AsyncSession, user_id: uuid.UUID, actor: User) -> None:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"there is no user with id {user_id}")
    if user.id == actor.id:
        raise Conflict("you cannot remove yourself")
    if user.administrator:
        raise Conflict(f"{user.user_name} is the installation's administrator and stays")
    await _forget_references(session, user.id)
    await session.delete(user)
    audit.record(session, f"User {user.user_name} was removed by {actor.user_name}",
                 code=audit.USER_REMOVED, user_id=actor.id)


async def _forget_references(session: AsyncSession, user_id: uuid.UUID) -> None:
    """History (audit events, jobs) outlives a removed user: it keeps their name in its text
    and loses only the link."""
    for table in Base.metadata.sorted_tables:
        for fk in table.foreign_keys:
            if (fk.column.table.name == User.__tablename__ and fk.parent.nullable
                    and fk.ondelete is None):
                await session.execute(update(table).where(fk.parent == user_id)
                                      .values({fk.parent.name: None}))


async def add_group(session: AsyncSession, directories: Directories, name: str, profile: str,
                    actor: User) -> Group:
    _checked_name(name, "group name")
    matches = [g for g in await directories.search_groups(profile, name.replace("*", ""))
               if g.name == name.replace("*", "")]
    if len(matches) != 1:
        raise NotFound(f"there is no group {name!r} in the directory of profile {profile}")
    entry = matches[0]
    existing = (await session.execute(select(Group).where(
        Group.domain == profile, Group.external_id == entry.id))).scalar_one_or_none()
    if existing is not None:
        raise Conflict(f"group {entry.name}@{profile} was already added")
    group = Group(name=entry.name, domain=profile, external_id=entry.id,
                  namespace=entry.dn.partition(",")[2])
    session.add(group)
    await session.flush()
    audit.record(session, f"Group {entry.name}@{profile} was added by {actor.user_name}",
                 code=audit.USER_ADDED, user_id=actor.id)
    return group


async def remove_group(session: AsyncSession, group_id: uuid.UUID, actor: User) -> None:
    group = await session.get(Group, group_id)
    if group is None:
        raise NotFound(f"there is no group with id {group_id}")
    await session.delete(group)
    audit.record(session, f"Group {group.name}@{group.domain} was removed by {actor.user_name}",
                 code=audit.USER_REMOVED, user_id=actor.id)


# -- roles -----------------------------------------------------------------------------

def permit_id(ident: str | None, name: str | None) -> int:
    """A permit named by id (`4`) or name (`vm_basic_operations`); unknown ones are refused."""
    if name:
        if name.lower() in PERMITS_BY_NAME:
            return PERMITS_BY_NAME[name.lower()].id
    elif ident is not None and ident.strip().isdigit() and int(ident) in PERMITS:
        return int(ident)
    raise InvalidInput(f"there is no permit {(name or ident or '')[:64]!r}")


@dataclass(frozen=True)
class RoleInput:
    name: str
    description: str
    administrative: bool
    permits: list[int]


async def find_role(session: AsyncSession, ref: Ref) -> RoleDef | Role:
    for role in PREDEFINED.values():
        if role.id == ref.id or (ref.id is None and role.name == ref.name):
            return role
    stmt = select(Role).where(Role.id == ref.id) if ref.id is not None else \
        select(Role).where(Role.name == (ref.name or ""))
    found = (await session.execute(stmt)).scalar_one_or_none()
    if found is None:
        raise NotFound(f"there is no role {ref.name or ref.id}")
    return found


async def add_role(session: AsyncSession, data: RoleInput, actor: User) -> Role:
    _checked_name(data.name, "role name")
    if any(r.name == data.name for r in PREDEFINED.values()) or (await session.execute(
            select(Role.id).where(Role.name == data.name))).first() is not None:
        raise Conflict(f"a role named {data.name} exists")
    if not data.permits:
        raise InvalidInput("a role needs at least one permit")
    role = Role(name=data.name, description=data.description,
                administrative=data.administrative, permits=data.permits)
    session.add(role)
    await session.flush()
    audit.record(session, f"Role {role.name} was added by {actor.user_name}",
                 code=audit.ROLE_ADDED, user_id=actor.id)
    return role


async def custom_role(session: AsyncSession, role_id: uuid.UUID) -> Role:
    if role_id in PREDEFINED:
        raise Conflict(f"{PREDEFINED[role_id].name} is a predefined role and cannot change")
    role = await session.get(Role, role_id)
    if role is None:
        raise NotFound(f"there is no role with id {role_id}")
    return role


async def remove_role(session: AsyncSession, role_id: uuid.UUID, actor: User) -> None:
    role = await custom_role(session, role_id)
    if (await session.execute(select(Permission.id).where(
            Permission.role_id == role.id))).first() is not None:
        raise Conflict(f"role {role.name} is in use by permissions; remove them first")
    await session.delete(role)
    audit.record(session, f"Role {role.name} was removed by {actor.user_name}",
                 code=audit.ROLE_REMOVED, user_id=actor.id)


async def set_permit(session: AsyncSession, role_id: uuid.UUID, permit: int, present: bool,
                     actor: User) -> Role:
    role = await custom_role(session, role_id)
    if permit not in PERMITS:
        raise InvalidInput(f"there is no permit {permit}")
    permits = set(role.permits)
    if present:
        permits.add(permit)
    elif permit in permits:
        permits.discard(permit)
    else:
        raise NotFound(f"role {role.name} has no permit {PERMITS[permit].name}")
    if not permits:
        raise Conflict("a role keeps at least one permit")
    role.permits = sorted(permits)
    audit.record(session, f"Role {role.name} permits changed by {actor.user_name}",
                 code=audit.ROLE_ADDED, user_id=actor.id)
    return role


# -- permissions -------------------------------------------------------------------------

@dataclass(frozen=True)
class PermissionInput:
    role: Ref
    user: Ref | None
    group: Ref | None


async def add_permission(session: AsyncSession, data: PermissionInput, object_type: str,
                         object_id: uuid.UUID | None, actor: User) -> Permission:
    role = await find_role(session, data.role)
    if (data.user is None) == (data.group is None):
        raise InvalidInput("a permission names either a user or a group")
    user_id = group_id = None
    who = ""
    if data.user is not None:
        user = await _user_by_ref(session, data.user)
        user_id, who = user.id, user.user_name
    elif data.group is not None:
        group = await _group_by_ref(session, data.group)
        group_id, who = group.id, f"group {group.name}@{group.domain}"
    if object_type != SYSTEM and await session.get(KINDS[object_type], object_id) is None:
        raise NotFound(f"there is no {object_type.replace('_', ' ')} with id {object_id}")
    existing = (await session.execute(select(Permission).where(
        Permission.role_id == role.id, Permission.user_id == user_id,
        Permission.group_id == group_id, Permission.object_type == object_type,
        Permission.object_id == object_id))).scalar_one_or_none()
    if existing is not None:
        raise Conflict(f"{who} already has role {role.name} there")
    permission = Permission(role_id=role.id, user_id=user_id, group_id=group_id,
                            object_type=object_type, object_id=object_id)
    session.add(permission)
    await session.flush()
    where = "the system" if object_id is None else f"{object_type} {object_id}"
    audit.record(session, f"{actor.user_name} gave role {role.name} on {where} to {who}",
                 code=audit.PERMISSION_ADDED, user_id=actor.id)
    return permission


async def _user_by_ref(session: AsyncSession, ref: Ref) -> User:
    found = await session.get(User, ref.id) if ref.id is not None else (await session.execute(
        select(User).where(User.user_name == (ref.name or "")))).scalar_one_or_none()
    if found is None:
        raise NotFound(f"there is no user {ref.name or ref.id}; add it first")
    return found


async def _group_by_ref(session: AsyncSession, ref: Ref) -> Group:
    found = await session.get(Group, ref.id) if ref.id is not None else (await session.execute(
        select(Group).where(Group.name == (ref.name or "")))).scalars().first()
    if found is None:
        raise NotFound(f"there is no group {ref.name or ref.id}; add it first")
    return found


async def remove_permission(session: AsyncSession, permission: Permission, actor: User
                            ) -> None:
    await session.delete(permission)
    audit.record(session, f"{actor.user_name} removed permission {permission.id} "
                 f"({permission.object_type} {permission.object_id or ''})",
                 code=audit.PERMISSION_REMOVED, user_id=actor.id)


async def make_owner(session: AsyncSession, user: User, vm_id: uuid.UUID) -> None:
    """A user who creates a VM manages it (oVirt gives them UserVmManager on it)."""
    session.add(Permission(role_id=USER_VM_MANAGER.id, user_id=user.id, object_type="vm",
                           object_id=vm_id))
