"""Writes of the internal profile's users: creation, password changes, unlocking (audited).

Passwords are checked against the policy and hashed on a worker thread (each scrypt costs
tens of milliseconds, and the history check one per remembered password), never logged:
audit lines name the user and the actor only.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Token, User, utcnow
from overt.engine.identity import lockout
from overt.engine.identity.password_policy import PasswordPolicy, problems, remembered
from overt.engine.identity.passwords import hash_password
from overt.engine.identity.profiles import INTERNAL
from overt.engine.identity.signin import MAX_PASSWORD
from overt.engine.model.errors import Conflict, InvalidInput, NotFound

_LOGIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
MAX_LOGIN = 64


def internal_name(user_name: str) -> str:
    """`alice` or `alice@internal` -> `alice@internal`; other profiles and odd names refused."""
    login, sep, profile = user_name.rpartition("@")
    if not sep:
        login, profile = user_name, INTERNAL
    if profile.removesuffix("-authz") != INTERNAL:
        raise InvalidInput(f"{profile[:64]!r} is not the internal profile; users of a "
                           "directory are added by their directory name")
    if not login or len(login) > MAX_LOGIN or not set(login) <= _LOGIN:
        raise InvalidInput(f"an internal user name is 1 to {MAX_LOGIN} letters, digits, "
                           "dots, dashes or underscores")
    return f"{login}@{INTERNAL}"


async def _new_hash(policy: PasswordPolicy, user_name: str, password: str,
                    previous: list[str]) -> str:
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"a password has at most {MAX_PASSWORD} characters")
    found = await asyncio.to_thread(problems, policy, password, user_name, previous)
    if found:
        raise InvalidInput("the password does not meet the password policy: "
                           + "; ".join(found))
    return await asyncio.to_thread(hash_password, password)


async def add_internal_user(session: AsyncSession, policy: PasswordPolicy, user_name: str,
                            password: str, actor: User) -> User:
    name = internal_name(user_name)
    if (await session.execute(select(User.id).where(User.user_name == name))).first():
        raise Conflict(f"user {name} exists")
    user = User(user_name=name, domain=INTERNAL, first_name=name.partition("@")[0],
                password_hash=await _new_hash(policy, name, password, []),
                password_changed_at=utcnow(), password_history=[])
    session.add(user)
    await session.flush()
    audit.record(session, f"User {name} was added by {actor.user_name}",
                 code=audit.USER_ADDED, user_id=actor.id)
    return user


async def internal_user(session: AsyncSession, user: User | None, what: str) -> User:
    if user is None:
        raise NotFound(f"there is no user {what}")
    if user.domain != INTERNAL:
        raise Conflict(f"{user.user_name} belongs to profile {user.domain}: its password and "
                       "lockout are the directory's")
    return user


async def set_password(session: AsyncSession, policy: PasswordPolicy, user: User,
                       password: str, actor: User) -> None:
    """A new password for an internal user (their own change or an administrator's reset):
    it must meet the policy and differ from the last `policy.history` ones; the user's
    tokens end with the old password."""
    previous = [h for h in [user.password_hash, *user.password_history] if h]
    new_hash = await _new_hash(policy, user.user_name, password,
                               previous[:max(1, policy.history)])
    user.password_history = remembered(policy, list(user.password_history),
                                       user.password_hash)
    user.password_hash = new_hash
    user.password_changed_at = utcnow()
    lockout.clear(user)
    # Whoever held the old password (an attacker, after a reset) loses its API sessions.
    await session.execute(delete(Token).where(Token.user_id == user.id))
    who = "the user" if actor.id == user.id else actor.user_name
    audit.record(session, f"The password of {user.user_name} was changed by {who}",
                 code=audit.USER_PASSWORD_CHANGED, user_id=actor.id)


async def unlock(session: AsyncSession, user: User, actor: User) -> None:
    lockout.clear(user)
    audit.record(session, f"User {user.user_name} was unlocked by {actor.user_name}",
                 code=audit.USER_UNLOCKED, user_id=actor.id)
