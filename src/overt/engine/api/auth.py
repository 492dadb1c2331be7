"""Who is calling: a bearer token from SSO (what the SDK sends) or HTTP Basic (curl users)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from overt.engine.db.tables import User
from overt.engine.identity.passwords import verify_password
from overt.engine.identity.tokens import user_for_token
from overt.engine.model.errors import NotAuthenticated
from overt.engine.services import audit

log = logging.getLogger(__name__)

BASIC_CACHE_SECONDS = 60.0


class BasicAuthCache:
    """Remembers recently verified Basic credentials so each call does not cost a scrypt."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[float, str]] = {}

    def recall(self, header: str) -> str | None:
        key = hashlib.sha256(header.encode()).hexdigest()
        hit = self._seen.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def remember(self, header: str, user_name: str) -> None:
        if len(self._seen) > 1000:
            self._seen.clear()
        key = hashlib.sha256(header.encode()).hexdigest()
        self._seen[key] = (time.monotonic() + BASIC_CACHE_SECONDS, user_name)


def qualified(user_name: str) -> str:
    """`admin` and `admin@internal` name the same user."""
    return user_name if "@" in user_name else f"{user_name}@internal"


async def user_by_name(session: AsyncSession, user_name: str) -> User | None:
    return (await session.execute(select(User).where(User.user_name == qualified(user_name))
                                  )).scalar_one_or_none()


async def check_password(session: AsyncSession, user_name: str, password: str) -> User | None:
    user = await user_by_name(session, user_name)
    if user is None or not verify_password(password, user.password_hash):
        return None
    return user


async def log_in(session: AsyncSession, user_name: str, password: str, *, peer: str,
                 where: str = "") -> User | None:
    """A sign-in by name and password (SSO token, portal): the user, or None; both outcomes
    go to the audit log, a failure also to the engine's log. `where`: " to the portal"."""
    user = await check_password(session, user_name, password)
    if user is None:
        audit.record(session, f"User {qualified(user_name)} failed to log in{where}",
                     code=audit.USER_LOGIN_FAILED)
        log.warning("failed login%s for %s from %s", where, qualified(user_name), peer)
        return None
    audit.record(session, f"User {user.user_name} logged in{where}", code=audit.USER_LOGIN,
                 user_id=user.id)
    return user


async def authenticate(request: Request, session: AsyncSession, cache: BasicAuthCache) -> User:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials:
        user = await user_for_token(session, credentials.strip())
        if user is not None:
            return user
        raise NotAuthenticated("the access token is not valid or has expired; log in again")
    if scheme.lower() == "basic" and credentials:
        remembered = cache.recall(header)
        if remembered is not None:
            user = await user_by_name(session, remembered)
            if user is not None:
                return user
        try:
            name, _, password = base64.b64decode(credentials).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise NotAuthenticated("the Basic credentials are malformed") from None
        user = await check_password(session, name, password)
        if user is None:
            raise NotAuthenticated("the user name or password is wrong")
        cache.remember(header, user.user_name)
        return user
    raise NotAuthenticated("authentication is required: send a bearer token from "
                           "/ovirt-engine/sso/oauth/token or HTTP Basic credentials")
