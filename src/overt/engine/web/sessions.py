"""Web portal sessions, CSRF tokens and one-time console tokens, all kept in the database.

The browser holds a random session id in a cookie; the database keeps only its
SHA-256, so a leaked database row cannot be replayed as a cookie. Sessions end after
a period of inactivity, at sign-out, and in any case `ABSOLUTE_LIFETIME` after sign-in
(activity does not extend a session past it: a stolen cookie is not good forever).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import ConsoleToken, User, WebSession, utcnow

COOKIE = "overt_session"
SIGNIN_COOKIE = "overt_signin"  # the sign-in form's own CSRF token (double submit)
IDLE_TIMEOUT = dt.timedelta(minutes=30)
ABSOLUTE_LIFETIME = dt.timedelta(hours=12)
TOUCH_EVERY = dt.timedelta(seconds=30)
CONSOLE_TOKEN_LIFETIME = dt.timedelta(seconds=60)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted token with the expected one."""
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())


async def start_session(session: AsyncSession, user: User) -> tuple[str, WebSession]:
    """A new session for `user`; returns the cookie value (never stored) and the row."""
    await session.execute(delete(WebSession).where(WebSession.expires_at <= utcnow()))
    value = new_secret()
    now = utcnow()
    row = WebSession(digest=digest(value), user_id=user.id, csrf_token=new_secret(),
                     created_at=now, last_seen_at=now, expires_at=now + IDLE_TIMEOUT)
    session.add(row)
    await session.flush()
    return value, row


async def find_session(session: AsyncSession, cookie: str | None, *, touch: bool = True
                       ) -> tuple[WebSession, User] | None:
    """The live session a cookie names, and its user; activity extends it."""
    if not cookie:
        return None
    now = utcnow()
    found = (await session.execute(
        select(WebSession, User).join(User, User.id == WebSession.user_id)
        .where(WebSession.digest == digest(cookie), WebSession.expires_at > now,
               WebSession.created_at > now - ABSOLUTE_LIFETIME))).first()
    if found is None:
        return None
    web_session, user = found
    if touch and now - web_session.last_seen_at > TOUCH_EVERY:
        web_session.last_seen_at = now
        web_session.expires_at = min(now + IDLE_TIMEOUT,
                                     web_session.created_at + ABSOLUTE_LIFETIME)
    return web_session, user


async def end_session(session: AsyncSession, cookie: str | None) -> None:
    if cookie:
        await session.execute(delete(WebSession).where(WebSession.digest == digest(cookie)))


async def issue_console_token(session: AsyncSession, web_session: WebSession,
                              vm_id: uuid.UUID) -> str:
    """A one-time token for the console proxy, bound to this session and VM."""
    await session.execute(delete(ConsoleToken).where(ConsoleToken.expires_at <= utcnow()))
    value = new_secret()
    session.add(ConsoleToken(digest=digest(value), session_digest=web_session.digest,
                             vm_id=vm_id, expires_at=utcnow() + CONSOLE_TOKEN_LIFETIME))
    return value


async def redeem_console_token(session: AsyncSession, token: str | None,
                               web_session: WebSession, vm_id: uuid.UUID) -> bool:
    """Use a console token: True once, for its own session and VM, before it expires."""
    if not token:
        return False
    now = utcnow()
    result = await session.execute(
        update(ConsoleToken).where(ConsoleToken.digest == digest(token),
                                   ConsoleToken.session_digest == web_session.digest,
                                   ConsoleToken.vm_id == vm_id,
                                   ConsoleToken.used_at.is_(None),
                                   ConsoleToken.expires_at > now)
        .values(used_at=now).execution_options(synchronize_session=False))
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
