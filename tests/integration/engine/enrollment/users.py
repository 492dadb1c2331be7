"""The administrator the enrollment tests act as: the seeded one, or made if the test's
database has no seed."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.seed import ADMIN
from overt.engine.db.tables import User


async def administrator(db: Database) -> User:
    async with db.transaction() as session:
        user = (await session.execute(select(User).where(User.user_name == ADMIN))
                ).scalar_one_or_none()
        if user is None:
            user = User(id=uuid.uuid4(), user_name=ADMIN, domain="internal", administrator=True)
            session.add(user)
        return user
