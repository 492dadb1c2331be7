"""The internal profile's password rules: what a new password must be, and when it expires.

Pure rules (no I/O): the service layer calls `problems` before hashing a new password and
`expired` at sign-in. Messages say every rule a password breaks, never the password.
"""

from __future__ import annotations

import datetime as dt
import string
from collections.abc import Iterable
from dataclasses import dataclass

from overt.engine.identity.passwords import verify_password

_CLASSES = (("a lower-case letter", string.ascii_lowercase),
            ("an upper-case letter", string.ascii_uppercase),
            ("a digit", string.digits))


@dataclass(frozen=True)
class PasswordPolicy:
    min_length: int = 12
    # Of lower case, upper case, digits and other characters, how many a password mixes.
    min_classes: int = 3
    history: int = 5  # a new password is none of the user's last `history` ones
    max_age_days: int = 180  # 0: passwords never expire


def _classes(password: str) -> int:
    found = sum(any(c in chars for c in password) for _, chars in _CLASSES)
    others = any(not any(c in chars for _, chars in _CLASSES) for c in password)
    return found + others


def problems(policy: PasswordPolicy, password: str, user_name: str,
             previous: Iterable[str] = ()) -> list[str]:
    """What is wrong with `password` as `user_name`'s new one (empty: nothing)."""
    found: list[str] = []
    if len(password) < policy.min_length:
        found.append(f"it has {len(password)} characters and needs at least "
                     f"{policy.min_length}")
    if _classes(password) < policy.min_classes:
        found.append(f"it mixes {_classes(password)} kinds of characters and needs "
                     f"{policy.min_classes} of: lower-case letters, upper-case letters, "
                     "digits, other characters")
    login = user_name.rpartition("@")[0] or user_name
    if login and login.lower() in password.lower():
        found.append("it contains the user name")
    if any(verify_password(password, old) for old in previous):
        found.append(f"it is one of the last {policy.history} passwords of this user")
    return found


def expired(policy: PasswordPolicy, changed_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a password set at `changed_at` is too old (never without a maximum age, nor
    without a date: a user from before expiry existed)."""
    if policy.max_age_days <= 0 or changed_at is None:
        return False
    if changed_at.tzinfo is None:
        changed_at = changed_at.replace(tzinfo=dt.UTC)
    return now - changed_at > dt.timedelta(days=policy.max_age_days)


def remembered(policy: PasswordPolicy, history: list[str], old_hash: str | None) -> list[str]:
    """The hashes to keep after a change: the replaced one first, `history` - 1 in all
    besides the current password."""
    kept = ([old_hash] if old_hash else []) + list(history)
    return kept[:max(0, policy.history - 1)]
