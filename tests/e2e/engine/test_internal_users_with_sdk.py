"""Internal users through the official SDK: an administrator creates them with a password
the policy accepts (a weak one is refused, saying why), they sign in, and an expired
password signs in only to be changed."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
import uuid
from collections.abc import Iterator

import httpx
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from sqlalchemy import select, update

from overt.engine.db.tables import AuditEvent, User
from tests.support.engine import RunningEngine, start_engine
from tests.support.no_nodes import NoNodes

GOOD = "Explorer-Map-2026"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    running = start_engine(tmp_path_factory.mktemp("engine"), transport=NoNodes(),
                           password_history=2, password_max_age_days=90)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin(engine: RunningEngine) -> Iterator[sdk.Connection]:
    conn = sdk.Connection(url=engine.url, username="admin@internal", password=engine.password,
                          ca_file=str(engine.ca_file))
    yield conn
    conn.close()


def _connect(engine: RunningEngine, user: str, password: str) -> sdk.Connection:
    return sdk.Connection(url=engine.url, username=user, password=password,
                          ca_file=str(engine.ca_file))


def _add(admin: sdk.Connection, login: str, password: str) -> types.User:
    return admin.system_service().users_service().add(types.User(
        user_name=f"{login}@internal", domain=types.Domain(name="internal-authz"),
        password=password))


def _expire(engine: RunningEngine, user_name: str, days: int) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)

    async def go() -> None:
        async with engine.runtime.db.transaction() as session:
            await session.execute(update(User).where(User.user_name == user_name)
                                  .values(password_changed_at=long_ago))
    asyncio.run_coroutine_threadsafe(go(), engine.loop).result(timeout=30)


def _audit(engine: RunningEngine) -> list[str]:
    async def go() -> list[str]:
        async with engine.runtime.db.transaction() as session:
            return list((await session.execute(select(AuditEvent.description))).scalars())
    return asyncio.run_coroutine_threadsafe(go(), engine.loop).result(timeout=30)


def _change(engine: RunningEngine, user: str, password: str, new: str) -> httpx.Response:
    tls = ssl.create_default_context(cafile=str(engine.ca_file))
    return httpx.post(engine.url.replace("/api", "/sso/password"), verify=tls, timeout=30,
                      data={"username": user, "password": password, "new_password": new})


@pytest.mark.parametrize("password,why", [
    ("Short-1", "needs at least 12"),
    ("onlylowercaseletters", "kinds of characters"),
    ("Xweak-weak-1-weak", "contains the user name"),
])
def test_a_weak_password_is_refused_saying_why(engine: RunningEngine, admin: sdk.Connection,
                                               password: str, why: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(sdk.Error) as refused:
        _add(admin, "weak", password)
    assert refused.value.code == 400
    assert why in str(refused.value) and password not in str(refused.value)
    assert "weak@internal" not in {u.user_name for u in
                                   admin.system_service().users_service().list()}
    assert all(password not in r.getMessage() for r in caplog.records)


def test_an_internal_user_is_created_and_signs_in(engine: RunningEngine,
                                                  admin: sdk.Connection) -> None:
    dora = _add(admin, "dora", GOOD)
    assert dora.user_name == "dora@internal" and dora.domain.name == "internal"
    with pytest.raises(sdk.Error) as again:
        _add(admin, "dora", GOOD)
    assert again.value.code == 409
    conn = _connect(engine, "dora@internal", GOOD)
    try:
        conn.authenticate()  # a token: signed in (no role yet to call anything)
    finally:
        conn.close()


def test_an_expired_password_signs_in_only_to_be_changed(engine: RunningEngine,
                                                         admin: sdk.Connection) -> None:
    _add(admin, "ezra", "Zeal-First-Pass-1")
    _expire(engine, "ezra@internal", days=91)
    with pytest.raises(sdk.AuthError) as expired:
        _connect(engine, "ezra@internal", "Zeal-First-Pass-1").authenticate()
    assert "has expired" in str(expired.value)
    # the current password may change it, not to itself, nor to a wrong current one
    reused = _change(engine, "ezra@internal", "Zeal-First-Pass-1", "Zeal-First-Pass-1")
    assert reused.status_code == 400 and "one of the last 2" in reused.json()["error"]
    wrong = _change(engine, "ezra@internal", "not-the-Pass-1", "Zeal-Second-Pass-2")
    assert wrong.status_code == 400 and "incorrect" in wrong.json()["error"]
    assert _change(engine, "ezra@internal", "Zeal-First-Pass-1",
                   "Zeal-Second-Pass-2").status_code == 200
    conn = _connect(engine, "ezra@internal", "Zeal-Second-Pass-2")
    try:
        conn.authenticate()  # a token: signed in (no role yet to call anything)
    finally:
        conn.close()
    audit = _audit(engine)
    assert any("password of ezra@internal was changed" in d for d in audit)
    assert not any("Zeal-" in d for d in audit)


def test_an_administrator_resets_a_password(engine: RunningEngine,
                                            admin: sdk.Connection) -> None:
    fay = _add(admin, "fay", "Fable-First-Pass-1")
    users = admin.system_service().users_service()
    tls = ssl.create_default_context(cafile=str(engine.ca_file))
    old_token = httpx.post(engine.url.replace("/api", "/sso/oauth/token"), verify=tls, data={
        "grant_type": "password", "scope": "ovirt-app-api", "username": "fay@internal",
        "password": "Fable-First-Pass-1"}).json()["access_token"]

    def api_with_old_token() -> int:
        return httpx.get(engine.url, verify=tls,
                         headers={"Authorization": f"Bearer {old_token}"}).status_code
    assert api_with_old_token() == 403  # signed in, with no role yet
    with pytest.raises(sdk.Error) as weak:
        users.user_service(fay.id).update(types.User(password="short"))
    assert weak.value.code == 400
    users.user_service(fay.id).update(types.User(password="Fable-Reset-Pass-2"))
    assert api_with_old_token() == 401  # the reset ended the old password's sessions
    conn = _connect(engine, "fay@internal", "Fable-Reset-Pass-2")
    try:
        conn.authenticate()  # a token: signed in (no role yet to call anything)
    finally:
        conn.close()
    with pytest.raises(sdk.NotFoundError):
        users.user_service(str(uuid.uuid4())).update(types.User(password="Fable-Reset-Pass-3"))
