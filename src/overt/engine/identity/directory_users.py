"""The engine's rows for directory users: made at a user's first sign-in (or when an
administrator adds them) and refreshed from the directory at each sign-in."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import User
from overt.engine.identity.ldap_directory import DirectoryUser


async def remember_directory_user(session: AsyncSession, profile: str, found: DirectoryUser
                                  ) -> User:
    """The engine's row for a directory user, made or refreshed from what the directory says
    now (its groups included: permissions given to them follow)."""
    user = (await session.execute(select(User).where(
        User.domain == profile, User.external_id == found.id))).scalar_one_or_none()
    if user is None:
        user = (await session.execute(select(User).where(
            User.user_name == f"{found.login}@{profile}"))).scalar_one_or_none()
    if user is None:
        user = User(user_name=f"{found.login}@{profile}", domain=profile, password_hash=None)
        session.add(user)
    user.external_id = found.id
    user.namespace = found.dn.partition(",")[2]
    user.first_name, user.last_name, user.email = found.first_name, found.last_name, found.email
    user.directory_groups = [g.id for g in found.groups]
    await session.flush()
    return user
