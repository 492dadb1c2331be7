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

from overt.engine import audit
from overt.engine.db.database import Database
from overt.engine.db.tables import User, utcnow
from overt.engine.identity import lockout
from overt.engine.identity.directories import Directories, UnknownProfile
from overt.engine.identity.directory_users import remember_directory_user
from overt.engine.identity.password_policy import expired
from overt.engine.identity.profiles import INTERNAL, split_principal
from overt.engine.identity.signin import MAX_PASSWORD, MAX_USER_NAME, SignInGuard, SignInRefused
from overt.engine.identity.tokens import user_for_token
from overt.engine.model.errors import NotAuthenticated
from overt.engine.model.status import LogSeverity

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


def shown(user_name: str) -> str:
    """A user name as logs and the audit log may show it: printable and short (it comes
    from an unauthenticated request)."""
    printable = "".join(c if c.isprintable() else "?" for c in user_name[:MAX_USER_NAME])
    return printable if len(user_name) <= MAX_USER_NAME else printable + "..."


class PasswordExpired(NotAuthenticated):
    """The password is right but too old: it may be used only to change it."""


def _internal_name(user_name: str, password: str) -> bool:
    """Whether a sign-in names the internal profile (and is short enough to be looked up)."""
    return (len(user_name) <= MAX_USER_NAME and len(password) <= MAX_PASSWORD
            and split_principal(user_name)[1] == INTERNAL)


async def check_password(db: Database, guard: SignInGuard, user_name: str, password: str,
                         directories: Directories | None = None) -> User | None:
    """The user, when the password is right; the same hashing cost either way. The hash
    runs outside any transaction: on SQLite transactions take turns, and a connection
    held during a hash is one the API's other requests wait for. A user of an LDAP
    profile is checked by the directory and kept (or refreshed) as an engine user."""
    if len(user_name) > MAX_USER_NAME or len(password) > MAX_PASSWORD:
        await guard.verify(password[:MAX_PASSWORD], None)
        return None
    login, profile = split_principal(user_name)
    if profile != INTERNAL:
        found = await (directories or Directories()).authenticate(profile, login, password)
        if found is None:
            return None
        async with db.transaction() as session:
            return await remember_directory_user(session, profile, found)
    async with db.transaction() as session:
        user = await user_by_name(session, user_name)
    stored = user.password_hash if user is not None else None
    if not await guard.verify(password, stored or None) or user is None:
        return None
    return user


async def _check_not_locked(db: Database, guard: SignInGuard, user_name: str, password: str,
                            name: str, peer: str) -> bool:
    """Raise SignInRefused while the client is throttled or the account locked; True when
    `user_name` is an internal user, whose row counts its failures."""
    guard.check(peer, name)
    if not _internal_name(user_name, password):
        return False
    async with db.transaction() as session:
        user = await user_by_name(session, user_name)
        if user is None:
            return False
        lockout.check(user, utcnow())
    return True


async def log_in(db: Database, guard: SignInGuard, user_name: str, password: str, *,
                 peer: str, where: str = "", quiet_success: bool = False,
                 directories: Directories | None = None, changing: bool = False
                 ) -> User | None:
    """A sign-in by name and password (SSO token, portal, Basic): the user, or None; both outcomes
    go to the audit log, a failure also to the engine's log. `where`: " to the portal".
    Raises SignInRefused (throttled, locked out) before any hash is computed, Unavailable
    when too many checks are under way, and PasswordExpired for a right but expired
    password (unless `changing` it)."""
    name = qualified(shown(user_name))
    try:
        kept = await _check_not_locked(db, guard, user_name, password, name, peer)
    except SignInRefused:
        log.warning("sign-in%s for %s from %s refused: locked out or throttled", where, name,
                    peer)
        raise
    try:
        user = await check_password(db, guard, user_name, password, directories)
    except UnknownProfile:
        async with db.transaction() as session:
            note_failure(session, guard, name, peer=peer, where=where)
        raise
    async with db.transaction() as session:
        if user is None:
            row = await user_by_name(session, user_name) if kept else None
            note_failure(session, guard, name, peer=peer, where=where, row=row)
            return None
        guard.succeeded(peer, name)
        too_old = False
        if user.domain == INTERNAL:
            row = await session.get(User, user.id)
            if row is not None and (row.failed_signins or row.locked_until):
                lockout.clear(row)
            # The installation's administrator's password is its operator's (the setting).
            too_old = not changing and not user.administrator and expired(
                guard.passwords, user.password_changed_at, utcnow())
        if too_old:
            audit.record(session, f"User {user.user_name} could not log in{where}: the "
                         "password has expired", code=audit.USER_LOGIN_FAILED,
                         user_id=user.id, severity=LogSeverity.WARNING)
        elif not quiet_success:  # Basic: every call signs in; the failures are what matter
            audit.record(session, f"User {user.user_name} logged in{where}",
                         code=audit.USER_LOGIN, user_id=user.id)
    if too_old:
        raise PasswordExpired(
            f"the password of {user.user_name} has expired; change it first (`overt user "
            "password`, or POST /ovirt-engine/sso/password with the current and the new "
            "password)")
    return user


def note_failure(session: AsyncSession, guard: SignInGuard, name: str, *, peer: str,
                 where: str, row: User | None = None) -> None:
    """Count a failed sign-in of `name` (already shown()) and audit it, and the lockout
    it may cause; an internal user's `row` counts it (the guard counts other names)."""
    if row is not None:
        guard.failed(peer, name, count_user=False)
        locked = lockout.fail(row, guard.policy, utcnow())
    else:
        locked = guard.failed(peer, name)
    audit.record(session, f"User {name} failed to log in{where} from {peer}",
                 code=audit.USER_LOGIN_FAILED, severity=LogSeverity.WARNING)
    log.warning("failed login%s for %s from %s", where, name, peer)
    if locked:
        audit.record(session, f"User {name} is locked out for "
                     f"{int(guard.policy.user_lockout_s // 60)} minutes after "
                     f"{guard.policy.user_failures} failed sign-ins",
                     code=audit.USER_LOCKED_OUT, severity=LogSeverity.ALERT)


def client_of(request: Request) -> str:
    return request.client.host if request.client else "?"


def _basic_credentials(header: str) -> tuple[str, str]:
    _scheme, _, credentials = header.partition(" ")
    try:
        name, _, password = base64.b64decode(credentials.strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise NotAuthenticated("the Basic credentials are malformed") from None
    return name, password


async def authenticate(request: Request, db: Database, cache: BasicAuthCache,
                       guard: SignInGuard, directories: Directories | None = None) -> User:
    """The caller, in transactions of its own (a password check holds none)."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials:
        async with db.transaction() as session:
            user = await user_for_token(session, credentials.strip())
        if user is not None:
            return user
        raise NotAuthenticated("the access token is not valid or has expired; log in again")
    if scheme.lower() == "basic" and credentials:
        remembered = cache.recall(header)
        if remembered is not None:
            async with db.transaction() as session:
                user = await user_by_name(session, remembered)
            if user is not None:
                return user
        name, password = _basic_credentials(header)
        user = await log_in(db, guard, name, password, peer=client_of(request),
                            where=" with HTTP Basic", quiet_success=True,
                            directories=directories)
        if user is None:
            raise NotAuthenticated("the user name or password is wrong")
        cache.remember(header, user.user_name)
        return user
    raise NotAuthenticated("authentication is required: send a bearer token from "
                           "/ovirt-engine/sso/oauth/token or HTTP Basic credentials")
