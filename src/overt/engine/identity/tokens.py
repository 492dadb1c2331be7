"""SSO bearer tokens: random, stored only as their SHA-256, with an expiry."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Token, User, utcnow

TOKEN_LIFETIME = dt.timedelta(hours=10)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_token(session: AsyncSession, user: User) -> tuple[str, dt.datetime]:
    """A new token; expired ones are purged on the way (they would pile up otherwise)."""
    await purge_expired(session)
    token = secrets.token_urlsafe(32)
    expires = utcnow() + TOKEN_LIFETIME
    session.add(Token(digest=digest(token), user_id=user.id, expires_at=expires))
    return token, expires


async def user_for_token(session: AsyncSession, token: str) -> User | None:
    row = (await session.execute(
        select(User).join(Token, Token.user_id == User.id)
        .where(Token.digest == digest(token), Token.expires_at > utcnow())
    )).scalar_one_or_none()
    return row


async def revoke_token(session: AsyncSession, token: str) -> None:
    await session.execute(delete(Token).where(Token.digest == digest(token)))


async def purge_expired(session: AsyncSession) -> None:
    await session.execute(delete(Token).where(Token.expires_at <= utcnow()))


