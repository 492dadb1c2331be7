"""Guessing passwords: the user is locked out with a clear message, every failure (SSO,
portal, Basic) is audited, unknown names cost the same hash, and names offered by
strangers are capped before they are stored or logged."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from overt.engine import audit
from overt.engine.db.tables import AuditEvent
from overt.engine.identity import signin
from tests.support.engine import RunningEngine, start_engine


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[RunningEngine]:
    running = start_engine(tmp_path / "engine")
    yield running
    running.stop()


def _client(engine: RunningEngine) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=engine.ca_file), timeout=30)


def _token_request(client: httpx.Client, engine: RunningEngine, user: str,
                   password: str) -> httpx.Response:
    return client.post(f"{engine.url.removesuffix('/api')}/sso/oauth/token", data={
        "grant_type": "password", "username": user, "password": password,
        "scope": "ovirt-app-api"})


def _audit(engine: RunningEngine, code: int) -> list[str]:
    async def read() -> list[str]:
        async with engine.runtime.db.transaction() as session:
            return list((await session.execute(select(AuditEvent.description).where(
                AuditEvent.code == code).order_by(AuditEvent.id))).scalars())
    return asyncio.run_coroutine_threadsafe(read(), engine.loop).result(timeout=30)


def test_password_guessing_locks_the_user_out_with_a_clear_message(engine: RunningEngine
                                                                    ) -> None:
    with _client(engine) as client:
        for _ in range(signin.SignInPolicy().user_failures):
            assert _token_request(client, engine, "admin", "wrong").status_code == 400
        refused = _token_request(client, engine, "admin", engine.password)
    assert refused.status_code == 429
    assert "account locked until" in refused.json()["error"]
    assert len(_audit(engine, audit.USER_LOGIN_FAILED)) == signin.SignInPolicy().user_failures
    assert any("admin@internal is locked out" in d for d in _audit(engine, audit.USER_LOCKED_OUT))


def test_basic_auth_failures_are_audited(engine: RunningEngine) -> None:
    wrong = base64.b64encode(b"admin@internal:wrong").decode()
    with _client(engine) as client:
        response = client.get(engine.url, headers={"Authorization": f"Basic {wrong}"})
    assert response.status_code == 401
    failures = _audit(engine, audit.USER_LOGIN_FAILED)
    assert failures and "admin@internal" in failures[0] and "HTTP Basic" in failures[0]


def test_unknown_user_names_cost_a_password_hash(engine: RunningEngine,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[str] = []
    real = signin.verify_password

    def counting(password: str, stored: str | None) -> bool:
        hashed.append(password)
        return real(password, stored)

    monkeypatch.setattr(signin, "verify_password", counting)
    with _client(engine) as client:
        assert _token_request(client, engine, "nobody-here", "guess-1").status_code == 400
        assert _token_request(client, engine, "admin", "guess-2").status_code == 400
    assert hashed == ["guess-1", "guess-2"]


def test_an_oversized_user_name_is_neither_stored_nor_logged_whole(
        engine: RunningEngine, caplog: pytest.LogCaptureFixture) -> None:
    name = "x" * 60_000
    with _client(engine) as client:
        response = _token_request(client, engine, name, "wrong")
    assert response.status_code == 400
    assert len(response.text) < 2000
    failures = _audit(engine, audit.USER_LOGIN_FAILED)
    assert failures and all(len(d) <= audit.MAX_DESCRIPTION for d in failures)
    assert all(len(record.getMessage()) < 2000 for record in caplog.records)
