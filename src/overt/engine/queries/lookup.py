"""Finding objects by id, or by the reference a client sent (id or name)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Base, Disk, StorageDomain
from overt.engine.model.errors import Conflict, InvalidInput, NotFound

T = TypeVar("T", bound=Base)


@dataclass(frozen=True)
class Ref:
    """How a client names another object: by id, or by name."""

    id: uuid.UUID | None = None
    name: str | None = None


def _kind(model: type[Base]) -> str:
    return str(model.__tablename__).removesuffix("s").replace("_", " ")


async def get(session: AsyncSession, model: type[T], object_id: uuid.UUID,
              *, for_update: bool = False) -> T:
    stmt = select(model).where(model.id == object_id)  # type: ignore[attr-defined]
    if for_update:  # what the lock guards is read afresh, not from the session's cache
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    found = (await session.execute(stmt)).scalar_one_or_none()
    if found is None:
        raise NotFound(f"there is no {_kind(model)} with id {object_id}")
    return found


async def domain_of(session: AsyncSession, disk: Disk) -> StorageDomain:
    """The storage domain holding the disk's volumes; a direct LUN disk has none."""
    if disk.storage_domain_id is None:
        raise Conflict(f"Disk {disk.name} is a direct LUN disk: it has no volumes on a "
                       "storage domain.")
    return await get(session, StorageDomain, disk.storage_domain_id)


async def by_name(session: AsyncSession, model: type[T], name: str) -> T | None:
    column: Any = model.name  # type: ignore[attr-defined]
    return (await session.execute(select(model).where(column == name))).scalars().first()


async def resolve(session: AsyncSession, model: type[T], ref: Ref | None, what: str) -> T:
    """The object a reference names (`<cluster id=".."/>` or `<cluster><name>..`)."""
    if ref is None:
        raise InvalidInput(f"{what} is required (give its id or name)")
    if ref.id is not None:
        try:
            return await get(session, model, ref.id)
        except NotFound:
            raise InvalidInput(f"{what} {ref.id} does not exist") from None
    name = ref.name
    if not name:
        raise InvalidInput(f"{what} must be given by id or by name")
    found = await by_name(session, model, name)
    if found is None:
        raise InvalidInput(f"{what} {name!r} does not exist")
    return found


async def name_taken(session: AsyncSession, model: type[Base], name: str,
                     *, other_than: uuid.UUID | None = None) -> bool:
    column: Any = model.name  # type: ignore[attr-defined]
    stmt = select(func.count()).select_from(model).where(func.lower(column) == name.lower())
    if other_than is not None:
        stmt = stmt.where(model.id != other_than)  # type: ignore[attr-defined]
    return bool((await session.execute(stmt)).scalar_one())


async def count(session: AsyncSession, model: type[Base], condition: Any) -> int:
    """How many rows of `model` meet `condition` (for "still in use" checks)."""
    stmt = select(func.count()).select_from(model).where(condition)
    return int((await session.execute(stmt)).scalar_one())
