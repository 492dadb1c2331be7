"""Guarding password sign-ins: hashing off the event loop, throttling, lockout.

A password check costs a scrypt (tens of milliseconds of CPU). Run on the event
loop, which also serves the API, the portal, the node gateway, the worker and the
monitor, a few dozen wrong passwords a second would stop the engine. So:

- checks run on a small thread pool (`hashlib.scrypt` releases the GIL) of low CPU
  priority, with a bounded queue: beyond it a sign-in is refused at once as busy
  (503), never queued;
- failures are counted per client address and per user name; past a limit the
  client is throttled and the user locked out for a while (429, saying until when),
  before any hash is computed;
- an unknown user costs the same hash as a known one (a dummy hash), so answer
  times do not tell which names exist.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import math
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from overt.engine.identity.password_policy import PasswordPolicy
from overt.engine.identity.passwords import hash_password, verify_password
from overt.engine.model.errors import OvertError, Unavailable

# Longest user name (and password) a sign-in may offer; longer ones are refused
# before they are hashed, stored or logged.
MAX_USER_NAME = 255
MAX_PASSWORD = 1024


class SignInRefused(OvertError):
    """Too many failed sign-ins: the client or the user must wait."""

    reason = "Too Many Requests"
    status = 429


def account_locked(until: dt.datetime) -> SignInRefused:
    """The refusal of a locked account (kept in the database or here): when it opens again,
    and who can open it sooner; the same words whether the account exists or not."""
    return SignInRefused(f"account locked until {until.astimezone(dt.UTC):%H:%M} UTC after "
                         "too many failed sign-ins; try again then or ask an administrator "
                         "to unlock it")


@dataclass(frozen=True)
class SignInPolicy:
    user_failures: int = 10  # failed sign-ins of one user within `user_window_s` ...
    user_window_s: float = 900.0
    user_lockout_s: float = 900.0  # ... lock that user out this long
    client_failures: int = 30  # failed sign-ins from one address within `client_window_s` ...
    client_window_s: float = 300.0
    client_lockout_s: float = 300.0  # ... refuse that address this long
    workers: int = 2  # threads hashing passwords
    queue: int = 16  # checks waiting for a thread; more are refused as busy
    tracked: int = 10_000  # users and clients remembered (oldest forgotten first)


class _Failures:
    """Recent failure times per key, and lockouts; bounded in the number of keys."""

    def __init__(self, limit: int, window_s: float, lockout_s: float, tracked: int,
                 clock: Callable[[], float]) -> None:
        self.limit, self.window_s, self.lockout_s = limit, window_s, lockout_s
        self.tracked = tracked
        self.clock = clock
        self._times: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked_until: OrderedDict[str, float] = OrderedDict()

    def locked_for(self, key: str) -> float:
        """Seconds `key` stays locked out (0 when it is not)."""
        until = self._locked_until.get(key)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._locked_until[key]
            return 0.0
        return left

    def fail(self, key: str) -> bool:
        """Count a failure; True when it locks `key` out."""
        now = self.clock()
        times = self._times.pop(key, None) or deque()
        times.append(now)
        while times and times[0] <= now - self.window_s:
            times.popleft()
        self._times[key] = times
        _trim(self._times, self.tracked)
        if len(times) < self.limit:
            return False
        self._times.pop(key, None)
        self._locked_until[key] = now + self.lockout_s
        _trim(self._locked_until, self.tracked)
        return True

    def forget(self, key: str) -> None:
        self._times.pop(key, None)

    def unlock(self, key: str) -> None:
        self._locked_until.pop(key, None)


def _trim(table: OrderedDict[str, Any], size: int) -> None:
    while len(table) > size:
        table.popitem(last=False)


class SignInGuard:
    """One per API process: every password sign-in (SSO, portal, Basic) goes through it."""

    def __init__(self, policy: SignInPolicy | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 passwords: PasswordPolicy | None = None) -> None:
        self.policy = policy or SignInPolicy()
        self.passwords = passwords or PasswordPolicy()  # for the expiry of internal passwords
        p = self.policy
        self._users = _Failures(p.user_failures, p.user_window_s, p.user_lockout_s, p.tracked,
                                clock)
        self._clients = _Failures(p.client_failures, p.client_window_s, p.client_lockout_s,
                                  p.tracked, clock)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            p.workers, thread_name_prefix="password", initializer=_lower_priority)
        self._outstanding = 0
        self._dummy: str | None = None

    def check(self, client: str, user_name: str) -> None:
        """Raise SignInRefused when the user is locked out or the client throttled."""
        locked = self._users.locked_for(user_name)
        if locked:
            raise account_locked(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=locked))
        throttled = self._clients.locked_for(client)
        if throttled:
            raise SignInRefused(f"too many failed sign-ins from {client}; try again in "
                                f"{_minutes(throttled)}")

    def failed(self, client: str, user_name: str, *, count_user: bool = True) -> bool:
        """Count a failed sign-in; True when it locked the user out just now. `count_user`
        False: the user's own row counts (an internal user), only the client counts here."""
        self._clients.fail(client)
        return self._users.fail(user_name) if count_user else False

    def unlock(self, user_name: str) -> None:
        """An administrator's unlock (the row's lockout is cleared by the caller)."""
        self._users.forget(user_name)
        self._users.unlock(user_name)

    def succeeded(self, client: str, user_name: str) -> None:
        self._users.forget(user_name)
        self._clients.forget(client)

    async def verify(self, password: str, stored: str | None) -> bool:
        """The password check, off the event loop; a missing hash costs a dummy one."""
        if self._outstanding >= self.policy.workers + self.policy.queue:
            raise Unavailable("the engine is busy checking other sign-ins; try again in a "
                              "few seconds")
        self._outstanding += 1
        try:
            loop = asyncio.get_running_loop()
            if stored is None:
                if self._dummy is None:
                    self._dummy = await loop.run_in_executor(self._pool, hash_password,
                                                             "not a password")
                await loop.run_in_executor(self._pool, verify_password, password, self._dummy)
                return False
            return await loop.run_in_executor(self._pool, verify_password, password, stored)
        finally:
            self._outstanding -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _lower_priority() -> None:
    """Password threads yield the CPU to the event loop: a flood of sign-ins then slows
    sign-ins, not the API (Linux gives each thread its own nice value)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def _minutes(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes} minute{'s' if minutes > 1 else ''}"
