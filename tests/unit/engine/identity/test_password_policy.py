"""The internal profile's password rules and lockout counting, as pure functions."""

from __future__ import annotations

import datetime as dt

import pytest

from overt.engine.db.tables import User
from overt.engine.identity import lockout
from overt.engine.identity.password_policy import PasswordPolicy, expired, problems, remembered
from overt.engine.identity.passwords import hash_password
from overt.engine.identity.signin import SignInPolicy, SignInRefused

POLICY = PasswordPolicy(min_length=12, min_classes=3, history=3, max_age_days=90)
NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize("password,complaint", [
    ("Short1!", "it has 7 characters and needs at least 12"),
    ("alllowercaseletters", "it mixes 1 kinds of characters and needs 3"),
    ("xxAlice-2026-Yy", "it contains the user name"),
])
def test_each_broken_rule_is_named(password: str, complaint: str) -> None:
    found = problems(POLICY, password, "alice@internal")
    assert any(complaint in p for p in found), found
    assert all(password not in p for p in found)  # the message never repeats the password


def test_a_good_password_has_no_problems() -> None:
    assert problems(POLICY, "Correct-Horse-42", "alice@internal") == []


def test_one_of_the_last_passwords_is_refused() -> None:
    old = [hash_password("Correct-Horse-42"), hash_password("Battery-Staple-7")]
    assert problems(POLICY, "Battery-Staple-7", "alice@internal", old) == [
        "it is one of the last 3 passwords of this user"]
    assert problems(POLICY, "Another-Thing-99", "alice@internal", old) == []


def test_history_keeps_the_replaced_hash_and_drops_the_oldest() -> None:
    assert remembered(POLICY, ["h2", "h1"], "h3") == ["h3", "h2"]
    assert remembered(PasswordPolicy(history=1), ["h1"], "h2") == []


def test_expiry_counts_from_the_change_and_never_without_a_date() -> None:
    assert not expired(POLICY, NOW - dt.timedelta(days=89), NOW)
    assert expired(POLICY, NOW - dt.timedelta(days=91), NOW)
    assert not expired(POLICY, None, NOW)  # the installation's administrator
    assert not expired(PasswordPolicy(max_age_days=0), NOW - dt.timedelta(days=9999), NOW)


def test_lockout_after_failures_within_the_window_and_its_message() -> None:
    policy = SignInPolicy(user_failures=3, user_window_s=600, user_lockout_s=900)
    user = User(user_name="alice@internal", failed_signins=0)
    assert not lockout.fail(user, policy, NOW)
    assert not lockout.fail(user, policy, NOW + dt.timedelta(minutes=11))  # window restarted
    assert not lockout.fail(user, policy, NOW + dt.timedelta(minutes=12))
    assert lockout.fail(user, policy, NOW + dt.timedelta(minutes=13))
    with pytest.raises(SignInRefused, match="account locked until 12:28 UTC"):
        lockout.check(user, NOW + dt.timedelta(minutes=20))
    lockout.check(user, NOW + dt.timedelta(minutes=29))  # over
    lockout.clear(user)
    assert user.locked_until is None and user.failed_signins == 0
