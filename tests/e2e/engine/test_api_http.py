"""The API at the HTTP level: faults for bad input, authentication, formats, SSO."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from defusedxml import ElementTree
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from tests.support.engine import RunningEngine


@pytest.fixture
def http(api_engine: RunningEngine) -> Iterator[httpx.Client]:
    base = api_engine.url.removesuffix("/ovirt-engine/api")
    tls = ssl.create_default_context(cafile=str(api_engine.ca_file))
    with httpx.Client(base_url=base, verify=tls, timeout=30) as client:
        yield client


@pytest.fixture
def token(http: httpx.Client, api_engine: RunningEngine) -> str:
    reply = http.post("/ovirt-engine/sso/oauth/token", data={
        "grant_type": "password", "scope": "ovirt-app-api", "username": "admin@internal",
        "password": api_engine.password}, headers={"Accept": "application/json"})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/json")
    return str(reply.json()["access_token"])


def _auth(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Version": "4", **extra}


def _fault(reply: httpx.Response) -> tuple[str, str]:
    assert reply.headers["content-type"].startswith("application/xml")
    root = ElementTree.fromstring(reply.content)
    assert root.tag == "fault"
    return root.findtext("reason") or "", root.findtext("detail") or ""


def test_missing_or_bad_token_is_401(http: httpx.Client) -> None:
    reply = http.get("/ovirt-engine/api/vms")
    assert reply.status_code == 401
    assert "authentication is required" in _fault(reply)[1]
    reply = http.get("/ovirt-engine/api/vms", headers={"Authorization": "Bearer nonsense"})
    assert reply.status_code == 401
    assert "not valid or has expired" in _fault(reply)[1]


def test_basic_auth_works_for_curl_users(http: httpx.Client, api_engine: RunningEngine) -> None:
    reply = http.get("/ovirt-engine/api", auth=("admin@internal", api_engine.password))
    assert reply.status_code == 200
    assert ElementTree.fromstring(reply.content).tag == "api"
    reply = http.get("/ovirt-engine/api", auth=("admin@internal", "wrong"))
    assert reply.status_code == 401


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"<vm><name>x</name", "not valid XML"),
        (b"", "needs a <vm> body"),
        (b"<host><name>x</name></host>", "expected a <vm> element, got <host>"),
        (b'<!DOCTYPE vm [<!ENTITY x SYSTEM "file:///etc/passwd">]><vm><name>&x;</name></vm>',
         "not valid XML"),
        (b"<vm><name>m1</name><cluster><name>Default</name></cluster><memory>lots</memory></vm>",
         "vm.memory must be an integer"),
    ],
)
def test_malformed_bodies_are_400_faults(http: httpx.Client, token: str, body: bytes,
                                         words: str) -> None:
    reply = http.post("/ovirt-engine/api/vms", content=body,
                      headers=_auth(token, **{"Content-Type": "application/xml"}))
    assert reply.status_code == 400
    assert words in _fault(reply)[1]


def test_unknown_paths_and_methods_are_faults(http: httpx.Client, token: str) -> None:
    reply = http.get("/ovirt-engine/api/nothing-here", headers=_auth(token))
    assert reply.status_code == 404
    assert _fault(reply)[0] == "Not Found"
    reply = http.patch("/ovirt-engine/api/vms", headers=_auth(token))
    assert reply.status_code == 405


def test_bad_search_is_a_400_fault(http: httpx.Client, token: str) -> None:
    reply = http.get("/ovirt-engine/api/vms", params={"search": "colour=blue"},
                     headers=_auth(token))
    assert reply.status_code == 400
    assert "cannot search by 'colour'" in _fault(reply)[1]


def test_json_is_served_on_request(http: httpx.Client, token: str) -> None:
    reply = http.get("/ovirt-engine/api/clusters", headers=_auth(token, Accept="application/json"))
    assert reply.status_code == 200
    data = reply.json()
    assert data["cluster"][0]["name"] == "Default"
    assert data["cluster"][0]["href"].startswith("/ovirt-engine/api/clusters/")
    created = http.post("/ovirt-engine/api/vms", headers=_auth(
        token, Accept="application/json", **{"Content-Type": "application/json"}),
        json={"name": "json-1", "cluster": {"name": "Default"}, "memory": 128 * 2**20})
    assert created.status_code == 201
    assert created.json()["memory"] == 128 * 2**20


def test_ca_certificate_is_served_without_authentication(
    http: httpx.Client, api_engine: RunningEngine
) -> None:
    reply = http.get("/ovirt-engine/services/pki-resource",
                     params={"resource": "ca-certificate", "format": "X509-PEM-CA"})
    assert reply.status_code == 200
    assert reply.content == api_engine.ca_file.read_bytes()
    assert http.get("/ovirt-engine/services/pki-resource",
                    params={"resource": "private-key"}).status_code == 400


def test_sso_errors_and_logout(http: httpx.Client, token: str) -> None:
    bad = http.post("/ovirt-engine/sso/oauth/token", data={
        "grant_type": "password", "username": "admin@internal", "password": "nope"})
    assert bad.status_code == 400
    assert bad.json()["error_code"] == "access_denied"
    assert "nope" not in bad.text
    out = http.post("/ovirt-engine/services/sso-logout", data={"scope": "ovirt-app-api",
                                                               "token": token})
    assert out.status_code == 200 and out.json() == {}
    assert http.get("/ovirt-engine/api", headers=_auth(token)).status_code == 401


@contextmanager
def _database_away(engine: RunningEngine) -> Iterator[Callable[[], None]]:
    """The engine's database stops answering (as during a failover): its connections go
    to a port where nothing listens, until the block ends or it is given `back()`."""
    db = engine.runtime.db
    saved = db.engine, db.sessions

    def back() -> None:
        db.engine, db.sessions = saved
    away = create_async_engine("postgresql+psycopg://overt:pw@127.0.0.1:1/overt")
    db.engine, db.sessions = away, async_sessionmaker(away, expire_on_commit=False)
    try:
        yield back
    finally:
        back()


def test_while_the_database_is_away_the_api_answers_503_with_retry_after(
        http: httpx.Client, token: str, api_engine: RunningEngine) -> None:
    headers = _auth(token)
    before = http.get("/ovirt-engine/api/vms", headers=headers)
    assert before.status_code == 200
    with _database_away(api_engine):
        listed = http.get("/ovirt-engine/api/vms", headers=headers)
        added = http.post("/ovirt-engine/api/vms", headers=headers | {
            "Content-Type": "application/xml"}, content=b"<vm><name>never</name><cluster>"
            b"<name>Default</name></cluster><template><name>Blank</name></template></vm>")
        signin = http.post("/ovirt-engine/sso/oauth/token", data={
            "grant_type": "password", "scope": "ovirt-app-api", "username": "admin@internal",
            "password": api_engine.password}, headers={"Accept": "application/json"})
    for reply in (listed, added):
        assert reply.status_code == 503
        assert reply.headers["Retry-After"] == "5"
        reason, detail = _fault(reply)
        assert reason == "Service Unavailable"
        assert "database is unavailable" in detail and "nothing was changed" in detail
    assert signin.status_code == 503 and signin.headers["Retry-After"] == "5"
    assert signin.json()["error_code"] == "temporarily_unavailable"
    # Back: the API answers as before, and the refused VM was never made.
    after = http.get("/ovirt-engine/api/vms", headers=headers)
    assert after.status_code == 200 and b"<name>never</name>" not in after.content


def test_a_read_made_while_the_database_fails_over_is_answered_once_it_is_back(
        http: httpx.Client, token: str, api_engine: RunningEngine) -> None:
    with _database_away(api_engine) as back:
        threading.Timer(1.5, back).start()
        reply = http.get("/ovirt-engine/api/vms", headers=_auth(token))
    assert reply.status_code == 200
    assert ElementTree.fromstring(reply.content).tag == "vms"
