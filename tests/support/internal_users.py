"""Internal users put straight into an engine's database (as an earlier engine kept them),
for tests about what they may see and how their sign-ins are guarded."""

from __future__ import annotations

import asyncio
import uuid

from overt.engine.db.tables import Permission, User
from overt.engine.identity.passwords import hash_password
from tests.support.engine import RunningEngine


def add_internal_user(engine: RunningEngine, login: str, password: str) -> uuid.UUID:
    async def add() -> uuid.UUID:
        async with engine.runtime.db.transaction() as session:
            user = User(user_name=f"{login}@internal", domain="internal",
                        password_hash=hash_password(password))
            session.add(user)
            await session.flush()
            return user.id
    return asyncio.run_coroutine_threadsafe(add(), engine.loop).result(timeout=30)


def give_role(engine: RunningEngine, user_id: uuid.UUID, role_id: uuid.UUID,
              object_type: str = "system", object_id: uuid.UUID | None = None) -> None:
    async def give() -> None:
        async with engine.runtime.db.transaction() as session:
            session.add(Permission(role_id=role_id, user_id=user_id, object_type=object_type,
                                   object_id=object_id))
    asyncio.run_coroutine_threadsafe(give(), engine.loop).result(timeout=30)
