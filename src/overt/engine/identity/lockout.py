"""Locking an internal account after repeated failed sign-ins, in its database row.

The row, not the API process's memory, holds the count: several API processes and a
restart then see one lockout, and `overt user unlock` ends it everywhere. Names that are
no internal user are locked the same way in memory (`SignInGuard`), with the same
message, so the answer does not tell which names exist.
"""

from __future__ import annotations

import datetime as dt

from overt.engine.db.tables import User
from overt.engine.identity.signin import SignInPolicy, account_locked


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def check(user: User, now: dt.datetime) -> None:
    """Raise SignInRefused while `user` is locked out."""
    if user.locked_until is not None and _aware(user.locked_until) > now:
        raise account_locked(_aware(user.locked_until))


def fail(user: User, policy: SignInPolicy, now: dt.datetime) -> bool:
    """Count a failed sign-in of `user`; True when it locks the account now (the count
    restarts when the first failure counted is older than the window)."""
    window = dt.timedelta(seconds=policy.user_window_s)
    if user.failed_since is None or now - _aware(user.failed_since) > window:
        user.failed_since, user.failed_signins = now, 0
    user.failed_signins += 1
    if user.failed_signins < policy.user_failures:
        return False
    user.locked_until = now + dt.timedelta(seconds=policy.user_lockout_s)
    user.failed_signins, user.failed_since = 0, None
    return True


def clear(user: User) -> None:
    """After a good sign-in or an administrator's unlock."""
    user.failed_signins, user.failed_since, user.locked_until = 0, None, None
