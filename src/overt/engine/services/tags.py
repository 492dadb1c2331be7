"""Tags: creating, renaming, moving and removing them, and assigning them to VMs.

Tags form a tree under oVirt's built-in root tag (id all zeros), which exists without a row:
a tag whose parent is the root has parent_id None. Removing a tag removes its subtree and
its assignments; a tag cannot become its own ancestor.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Tag, User, Vm, VmTag
from overt.engine.model.errors import Conflict, InvalidInput, NotFound
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref

ROOT_TAG_ID = uuid.UUID(int=0)
ROOT_TAG_NAME = "root"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class TagInput:
    name: str | None = None
    description: str | None = None
    parent: Ref | None = None


def _check_name(name: str) -> str:
    if not _NAME.match(name) or name == ROOT_TAG_NAME:
        raise InvalidInput(f"tag name {name!r} is not valid: use 1-64 letters, digits, '.', "
                           "'_' or '-', starting with a letter or digit (and not 'root')")
    return name


async def _parent_id(session: AsyncSession, parent: Ref | None) -> uuid.UUID | None:
    """The parent's row id, None for the root tag."""
    if parent is None or parent.id == ROOT_TAG_ID or (parent.id is None
                                                      and parent.name == ROOT_TAG_NAME):
        return None
    return (await lookup.resolve(session, Tag, parent, "tag.parent")).id


async def get_tag(session: AsyncSession, tag_id: uuid.UUID) -> Tag:
    return await lookup.get(session, Tag, tag_id)


async def add_tag(session: AsyncSession, data: TagInput, user: User) -> Tag:
    if not data.name:
        raise InvalidInput("tag.name is required")
    name = _check_name(data.name)
    if await lookup.name_taken(session, Tag, name):
        raise Conflict(f"a tag named {name} already exists")
    tag = Tag(name=name, description=data.description or "",
              parent_id=await _parent_id(session, data.parent))
    session.add(tag)
    await session.flush()
    audit.record(session, f"Tag {name} was added by {user.user_name}", user_id=user.id)
    return tag


async def update_tag(session: AsyncSession, tag_id: uuid.UUID, data: TagInput, user: User) -> Tag:
    tag = await get_tag(session, tag_id)
    if data.name is not None and data.name != tag.name:
        name = _check_name(data.name)
        if await lookup.name_taken(session, Tag, name, other_than=tag.id):
            raise Conflict(f"a tag named {name} already exists")
        tag.name = name
    if data.description is not None:
        tag.description = data.description
    if data.parent is not None:
        parent_id = await _parent_id(session, data.parent)
        if parent_id is not None and (parent_id == tag.id
                                      or tag.id in await _ancestors(session, parent_id)):
            raise Conflict(f"tag {tag.name} cannot be moved under itself or its own subtags")
        tag.parent_id = parent_id
    await session.flush()
    audit.record(session, f"Tag {tag.name} was updated by {user.user_name}", user_id=user.id)
    return tag


async def _ancestors(session: AsyncSession, tag_id: uuid.UUID) -> set[uuid.UUID]:
    found: set[uuid.UUID] = set()
    current: uuid.UUID | None = tag_id
    while current is not None and current not in found:
        found.add(current)
        current = (await session.execute(select(Tag.parent_id).where(Tag.id == current))
                   ).scalar_one_or_none()
    return found


async def remove_tag(session: AsyncSession, tag_id: uuid.UUID, user: User) -> None:
    tag = await get_tag(session, tag_id)
    subtree, frontier = {tag.id}, [tag.id]
    while frontier:
        children = list((await session.execute(
            select(Tag.id).where(Tag.parent_id.in_(frontier)))).scalars())
        frontier = [c for c in children if c not in subtree]
        subtree.update(frontier)
    await session.execute(delete(VmTag).where(VmTag.tag_id.in_(subtree)))
    await session.execute(delete(Tag).where(Tag.id.in_(subtree)))
    audit.record(session, f"Tag {tag.name} was removed by {user.user_name}", user_id=user.id)


async def vm_tags(session: AsyncSession, vm_id: uuid.UUID) -> list[Tag]:
    await lookup.get(session, Vm, vm_id)
    return list((await session.execute(
        select(Tag).join(VmTag, VmTag.tag_id == Tag.id).where(VmTag.vm_id == vm_id)
        .order_by(Tag.name))).scalars())


async def assign_tag(session: AsyncSession, vm_id: uuid.UUID, tag_ref: Ref | None,
                     user: User) -> Tag:
    vm = await lookup.get(session, Vm, vm_id)
    tag = await lookup.resolve(session, Tag, tag_ref, "tag")
    if await session.get(VmTag, (vm.id, tag.id)) is None:
        session.add(VmTag(vm_id=vm.id, tag_id=tag.id))
        await session.flush()
        audit.record(session, f"Tag {tag.name} was assigned to VM {vm.name} by {user.user_name}",
                     vm_id=vm.id, user_id=user.id)
    return tag


async def vm_tag(session: AsyncSession, vm_id: uuid.UUID, tag_id: uuid.UUID) -> Tag:
    vm = await lookup.get(session, Vm, vm_id)
    if await session.get(VmTag, (vm.id, tag_id)) is None:
        raise NotFound(f"VM {vm.name} has no tag {tag_id}")
    return await get_tag(session, tag_id)


async def unassign_tag(session: AsyncSession, vm_id: uuid.UUID, tag_id: uuid.UUID,
                       user: User) -> None:
    vm = await lookup.get(session, Vm, vm_id)
    tag = await vm_tag(session, vm_id, tag_id)
    await session.execute(delete(VmTag).where(VmTag.vm_id == vm.id, VmTag.tag_id == tag.id))
    audit.record(session, f"Tag {tag.name} was unassigned from VM {vm.name} by "
                 f"{user.user_name}", vm_id=vm.id, user_id=user.id)
