"""The sign-in guard's counting, on a clock of the test's own."""

from __future__ import annotations

import pytest

from overt.engine.identity.signin import SignInGuard, SignInPolicy, SignInRefused


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_user_is_locked_out_after_its_failures_and_back_after_the_lockout() -> None:
    clock = Clock()
    guard = SignInGuard(SignInPolicy(user_failures=3, user_lockout_s=60), clock=clock)
    assert [guard.failed(f"10.0.0.{i}", "bob@internal") for i in range(3)] == [
        False, False, True]
    with pytest.raises(SignInRefused, match=r"account locked until \d\d:\d\d UTC"):
        guard.check("10.0.0.9", "bob@internal")
    guard.check("10.0.0.9", "alice@internal")  # others are not
    clock.now += 61
    guard.check("10.0.0.9", "bob@internal")


def test_failures_outside_the_window_are_forgotten_and_success_resets() -> None:
    clock = Clock()
    guard = SignInGuard(SignInPolicy(user_failures=3, user_window_s=10), clock=clock)
    guard.failed("c", "bob")
    guard.failed("c", "bob")
    clock.now += 11
    assert not guard.failed("c", "bob")
    guard.succeeded("c", "bob")
    assert not guard.failed("c", "bob") and not guard.failed("c", "bob")


def test_a_client_is_throttled_whatever_names_it_tries() -> None:
    guard = SignInGuard(SignInPolicy(client_failures=5, user_failures=100), clock=Clock())
    for i in range(5):
        guard.failed("192.0.2.7", f"user{i}")
    with pytest.raises(SignInRefused, match=r"from 192\.0\.2\.7"):
        guard.check("192.0.2.7", "someone-new")
    guard.check("192.0.2.8", "someone-new")


def test_remembered_names_and_clients_are_bounded() -> None:
    guard = SignInGuard(SignInPolicy(tracked=100, user_failures=10**6,
                                     client_failures=10**6), clock=Clock())
    for i in range(1000):
        guard.failed(f"c{i}", f"u{i}")
    assert len(guard._users._times) <= 100 and len(guard._clients._times) <= 100


async def test_a_full_queue_of_checks_is_refused_at_once() -> None:
    from overt.engine.model.errors import Unavailable
    guard = SignInGuard(SignInPolicy(workers=1, queue=0))
    guard._outstanding = 1  # one check under way, no room to wait
    with pytest.raises(Unavailable, match="busy"):
        await guard.verify("x", None)
