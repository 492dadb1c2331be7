"""An attacker guesses an internal user's password until the account locks, then keeps
guessing after the engine restarts (or at another API process): the lockout is in the
user's row, so it holds; an unknown name locks the same way, so the answer does not tell
which names exist; and no password reaches a log line or an answer."""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.engine import RunningEngine, start_engine
from tests.support.internal_users import add_internal_user
from tests.support.no_nodes import NoNodes

FAILURES = 3
RIGHT = "Carol-Secret-Pass-77"
GUESSES = [f"guess-{i}-SecretGuess" for i in range(FAILURES)]


def _start(data: Path) -> RunningEngine:
    return start_engine(data, transport=NoNodes(), signin_failures=FAILURES)


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "engine"


def _token(engine: RunningEngine, user: str, password: str) -> httpx.Response:
    tls = ssl.create_default_context(cafile=str(engine.ca_file))
    return httpx.post(engine.url.replace("/api", "/sso/oauth/token"), verify=tls, timeout=30,
                      data={"grant_type": "password", "scope": "ovirt-app-api",
                            "username": user, "password": password})


def _portal_sign_in(engine: RunningEngine, user: str, password: str) -> httpx.Response:
    base = engine.url.removesuffix("/ovirt-engine/api")
    tls = ssl.create_default_context(cafile=str(engine.ca_file))
    with httpx.Client(base_url=base, verify=tls, timeout=30) as client:
        client.get("/signin")
        return client.post("/signin", data={
            "csrf_token": client.cookies["overt_signin"], "username": user,
            "password": password, "next": "/"})


def _locked_message(reply: httpx.Response) -> str:
    assert reply.status_code == 429, reply.text
    message: str = reply.json()["error"]
    assert re.match(r"account locked until \d\d:\d\d UTC after too many failed sign-ins",
                    message), message
    return re.sub(r"\d\d:\d\d", "HH:MM", message)


def test_a_locked_out_attacker_cannot_keep_guessing_after_a_restart(
        data: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    engine = _start(data)
    try:
        add_internal_user(engine, "carol", RIGHT)
        for guess in GUESSES:
            assert _token(engine, "carol@internal", guess).status_code == 400
        known = _locked_message(_token(engine, "carol@internal", RIGHT))
        for guess in GUESSES:
            assert _token(engine, "nobody@internal", guess).status_code == 400
        unknown = _locked_message(_token(engine, "nobody@internal", "whatever-Pass-1"))
        assert known == unknown  # the same words whether the account exists or not
    finally:
        engine.stop()
    engine = _start(data)  # a restarted (or another) API process
    try:
        _locked_message(_token(engine, "carol@internal", RIGHT))
        _locked_message(_token(engine, "carol", "yet-another-Guess-9"))
        portal = _portal_sign_in(engine, "carol@internal", RIGHT)
        assert portal.status_code == 429 and "account locked until" in portal.text
    finally:
        engine.stop()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "carol@internal" in logged  # the failures are logged, by name ...
    for secret in (RIGHT, *GUESSES):  # ... never with a password
        assert secret not in logged
