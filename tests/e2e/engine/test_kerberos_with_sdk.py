"""Kerberos single sign-on through the official SDK: after kinit, `Connection(kerberos=True)`
gets a token from /ovirt-engine/sso/oauth/token-http-auth (SPNEGO, done by libcurl), as the
directory user the principal names; the test runs its own MIT KDC and OpenLDAP."""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import gssapi
import httpx
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from tests.support.engine import RunningEngine, start_engine
from tests.support.kdc import Kdc, start_kdc
from tests.support.no_nodes import NoNodes
from tests.support.slapd import PASSWORDS, Slapd, start_slapd

MIB = 2**20
KERBEROS_PASSWORDS = {"alice": "alice-Kerberos-1", "zed": "zed-Kerberos-1"}  # zed: no LDAP entry


@pytest.fixture(scope="module")
def kdc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kdc]:
    server = start_kdc(tmp_path_factory.mktemp("kdc"), KERBEROS_PASSWORDS)
    saved = {k: os.environ.get(k) for k in ("KRB5_CONFIG", "KRB5CCNAME", "KRB5RCACHETYPE")}
    os.environ.update(server.env())  # the engine (acceptor) and libcurl (client) read it
    yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


@pytest.fixture(scope="module")
def engine(kdc: Kdc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    slapd: Slapd = start_slapd(tmp_path_factory.mktemp("slapd"))
    data = tmp_path_factory.mktemp("engine")
    profiles = data / "profiles.toml"
    profiles.write_text(slapd.profile_toml("example.com"))
    running = start_engine(data, transport=NoNodes(), auth_profiles_file=profiles,
                           kerberos_keytab=kdc.keytab, kerberos_profile="example.com")
    yield running
    running.stop()
    slapd.stop()


@pytest.fixture
def ticket(kdc: Kdc, tmp_path: Path) -> Iterator[Path]:
    """Where a test's ticket cache is (KRB5CCNAME), empty until it kinits."""
    ccache = tmp_path / "ccache"
    os.environ["KRB5CCNAME"] = f"FILE:{ccache}"
    yield ccache
    os.environ.pop("KRB5CCNAME", None)


def kerberos_connection(engine: RunningEngine) -> sdk.Connection:
    return sdk.Connection(url=engine.url, kerberos=True, ca_file=str(engine.ca_file))


def test_a_user_with_a_ticket_connects_with_kerberos(engine: RunningEngine, kdc: Kdc,
                                                     ticket: Path) -> None:
    admin = sdk.Connection(url=engine.url, username="admin@internal",
                           password=engine.password, ca_file=str(engine.ca_file))
    system = admin.system_service()
    vm = system.vms_service().add(types.Vm(name="kerberized", cluster=types.Cluster(
        name="Default"), template=types.Template(name="Blank"), memory=256 * MIB))
    alice = system.users_service().add(types.User(user_name="alice@example.com",
                                                  domain=types.Domain(name="example.com")))
    system.vms_service().vm_service(vm.id).permissions_service().add(types.Permission(
        role=types.Role(name="UserRole"), user=types.User(id=alice.id)))
    try:
        kdc.kinit("alice", KERBEROS_PASSWORDS["alice"], ticket)
        conn = kerberos_connection(engine)
        assert [v.name for v in conn.system_service().vms_service().list()] == ["kerberized"]
        conn.close()
        events = system.events_service().list(search="severity=normal", max=20)
        assert any("alice@example.com logged in with Kerberos as alice@OVERT.TEST"
                   in (e.description or "") for e in events)
        # the same user signs in with the directory password too: one engine user
        assert [u.id for u in system.users_service().list()
                if u.user_name == "alice@example.com"] == [alice.id]
        assert PASSWORDS["alice"] != KERBEROS_PASSWORDS["alice"]
    finally:
        system.users_service().user_service(alice.id).remove()
        system.vms_service().vm_service(vm.id).remove()
        admin.close()


def test_without_a_ticket_or_with_an_unknown_principal_kerberos_is_refused(
        engine: RunningEngine, kdc: Kdc, ticket: Path) -> None:
    with pytest.raises(sdk.AuthError):
        kerberos_connection(engine).authenticate()  # no ticket at all
    kdc.kinit("zed", KERBEROS_PASSWORDS["zed"], ticket)  # a principal the directory lacks
    with pytest.raises(sdk.AuthError) as unknown:
        kerberos_connection(engine).authenticate()
    assert "no such user" in str(unknown.value)


def test_the_endpoint_challenges_and_refuses_bad_tokens(engine: RunningEngine) -> None:
    url = engine.url.replace("/api", "/sso/oauth/token-http-auth")
    form = {"grant_type": "urn:ovirt:params:oauth:grant-type:http", "scope": "ovirt-app-api"}
    with httpx.Client(verify=ssl.create_default_context(cafile=str(engine.ca_file))) as http:
        challenge = http.post(url, data=form)
        assert challenge.status_code == 401
        assert challenge.headers["www-authenticate"] == "Negotiate"
        assert "access_token" not in challenge.json()
        for bad in ("not base64!", "AAAA", "YWJj" * 40000):
            refused = http.post(url, data=form, headers={"Authorization": f"Negotiate {bad}"})
            # an over-long header is refused before it is read (400)
            assert refused.status_code in (400, 401), bad[:20]
            assert "access_token" not in refused.text


def test_an_expired_ticket_is_refused(engine: RunningEngine, kdc: Kdc, ticket: Path) -> None:
    kdc.kinit("alice", KERBEROS_PASSWORDS["alice"], ticket, lifetime="3s")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the ticket cache says it expired
        listed = subprocess.run(["klist", "-s"], env={**os.environ, **kdc.env(ticket)},
                                check=False)
        if listed.returncode != 0:
            break
        time.sleep(0.5)
    time.sleep(2)  # past the KDC's and the engine's tolerated clock skew too
    with pytest.raises(sdk.AuthError):
        kerberos_connection(engine).authenticate()


def _give_alice_a_vm(engine: RunningEngine, name: str) -> tuple[sdk.Connection, str, str]:
    admin = sdk.Connection(url=engine.url, username="admin@internal",
                           password=engine.password, ca_file=str(engine.ca_file))
    system = admin.system_service()
    vm = system.vms_service().add(types.Vm(name=name, cluster=types.Cluster(
        name="Default"), template=types.Template(name="Blank"), memory=256 * MIB))
    alice = system.users_service().add(types.User(user_name="alice@example.com",
                                                  domain=types.Domain(name="example.com")))
    system.vms_service().vm_service(vm.id).permissions_service().add(types.Permission(
        role=types.Role(name="UserRole"), user=types.User(id=alice.id)))
    return admin, vm.id, alice.id


def _take_back(admin: sdk.Connection, vm_id: str, alice_id: str) -> None:
    system = admin.system_service()
    system.users_service().user_service(alice_id).remove()
    system.vms_service().vm_service(vm_id).remove()
    admin.close()


def _spnego_token() -> str:
    """What a browser sends for HTTP/127.0.0.1 from the ticket cache (KRB5CCNAME)."""
    service = gssapi.Name("HTTP@127.0.0.1", gssapi.NameType.hostbased_service)
    context = gssapi.SecurityContext(name=service, usage="initiate",
                                     mech=gssapi.Mechanism.from_sasl_name("SPNEGO"))
    return base64.b64encode(context.step() or b"").decode()


def test_the_portal_signs_in_with_a_kerberos_ticket(engine: RunningEngine, kdc: Kdc,
                                                     ticket: Path) -> None:
    admin, vm_id, alice_id = _give_alice_a_vm(engine, "kerberos-portal")
    base = engine.url.removesuffix("/ovirt-engine/api")
    tls = ssl.create_default_context(cafile=str(engine.ca_file))
    try:
        with httpx.Client(base_url=base, verify=tls) as http:
            challenge = http.get("/signin/kerberos")
            assert challenge.status_code == 401
            assert challenge.headers["www-authenticate"] == "Negotiate"
            assert "sent no Kerberos ticket" in challenge.text
            assert "overt_session" not in http.cookies
            refused = http.get("/signin/kerberos", headers={"Authorization": "Negotiate AAAA"})
            assert refused.status_code == 401 and "Cannot sign in with Kerberos" in refused.text

            kdc.kinit("alice", KERBEROS_PASSWORDS["alice"], ticket)
            signed_in = http.get("/signin/kerberos",
                                 headers={"Authorization": f"Negotiate {_spnego_token()}"})
            assert signed_in.status_code == 303, signed_in.text[:500]
            assert signed_in.headers["location"] == "/user"
            portal = http.get("/user")
            assert portal.status_code == 200
            assert 'data-vm="kerberos-portal"' in portal.text
            assert "alice@example.com" in portal.text
    finally:
        _take_back(admin, vm_id, alice_id)

