"""Directory sign-in and the access model through the official SDK, against a real OpenLDAP
server the test starts: LDAP users sign in as name@profile, groups (nested) carry
permissions, roles and permits, and users see and touch only what a role allows."""

from __future__ import annotations

import contextlib
import json
import os
import re
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from tests.conftest import postgres_database
from tests.support.engine import RunningEngine, free_port, start_engine
from tests.support.no_nodes import NoNodes
from tests.support.slapd import PASSWORDS, Slapd, start_slapd

MIB = 2**20


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    server = start_slapd(tmp_path_factory.mktemp("slapd"))
    yield server
    server.stop()


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def engine(request: pytest.FixtureRequest, slapd: Slapd,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    """An engine with LDAP profiles, on the embedded SQLite and on a PostgreSQL of its own."""
    with contextlib.ExitStack() as stack:
        db = stack.enter_context(postgres_database()) if request.param == "postgresql" else None
        running = _start(slapd, tmp_path_factory, db)
        yield running
        running.stop()


def _start(slapd: Slapd, tmp_path_factory: pytest.TempPathFactory, db: str | None
           ) -> RunningEngine:
    data = tmp_path_factory.mktemp("engine")
    dead = f"ldap://127.0.0.1:{free_port()}"
    profiles = data / "profiles.toml"
    profiles.write_text("\n".join([
        slapd.profile_toml("example.com"),
        slapd.profile_toml("failover.example", servers=[dead, slapd.url]),
        slapd.profile_toml("down.example", servers=[dead]),
        slapd.profile_toml("tls.example", start_tls=True, ca_file=slapd.ca_file),
        slapd.profile_toml("ldaps.example", servers=[slapd.ldaps_url], ca_file=slapd.ca_file),
        slapd.profile_toml("wrongca.example", servers=[slapd.ldaps_url],
                           ca_file=Path("/etc/ssl/certs/ca-certificates.crt")),
    ]))
    return start_engine(data, db=db, transport=NoNodes(), auth_profiles_file=profiles)


def connect(engine: RunningEngine, user: str, password: str) -> sdk.Connection:
    return sdk.Connection(url=engine.url, username=user, password=password,
                          ca_file=str(engine.ca_file))


@pytest.fixture
def admin(engine: RunningEngine) -> Iterator[sdk.Connection]:
    conn = connect(engine, "admin@internal", engine.password)
    yield conn
    conn.close()


def token_reply(engine: RunningEngine, user: str, password: str) -> dict[str, str]:
    tls = ssl.create_default_context(cafile=str(engine.ca_file))
    reply = httpx.post(engine.url.replace("/api", "/sso/oauth/token"), verify=tls, timeout=30,
                       data={"grant_type": "password", "scope": "ovirt-app-api",
                             "username": user, "password": password})
    body: dict[str, str] = reply.json()
    return body


def test_ldap_users_sign_in_as_name_at_profile(engine: RunningEngine) -> None:
    assert "access_token" in token_reply(engine, "alice@example.com", PASSWORDS["alice"])
    assert "access_token" in token_reply(engine, "bob@tls.example", PASSWORDS["bob"])
    assert "access_token" in token_reply(engine, "bob@ldaps.example", PASSWORDS["bob"])
    # the first server of this profile is dead; the second answers
    assert "access_token" in token_reply(engine, "dave@failover.example", PASSWORDS["dave"])


@pytest.mark.parametrize("user,password", [
    ("alice@example.com", "wrong"),
    ("alice@example.com", ""),
    ("nobody@example.com", "whatever"),
    ("carol@example.com", PASSWORDS["carol"]),  # disabled in the directory
    ("*)(uid=*@example.com", "x"),  # a filter injection matches nobody
    ("*@example.com", PASSWORDS["alice"]),
    ("alice@nosuchprofile", PASSWORDS["alice"]),
    ("a" * 300 + "@example.com", "x"),
])
def test_bad_directory_sign_ins_are_refused(engine: RunningEngine, user: str,
                                            password: str) -> None:
    reply = token_reply(engine, user, password)
    assert "access_token" not in reply
    assert reply["error_code"] in ("access_denied", "invalid_request")
    if password:
        with pytest.raises(sdk.AuthError):
            connect(engine, user, password).authenticate()


def test_a_dead_directory_says_so_and_internal_users_still_sign_in(
        engine: RunningEngine) -> None:
    reply = token_reply(engine, "alice@down.example", PASSWORDS["alice"])
    assert "cannot be reached" in reply["error"]
    wrong_ca = token_reply(engine, "alice@wrongca.example", PASSWORDS["alice"])
    assert "access_token" not in wrong_ca and "cannot be reached" in wrong_ca["error"]
    assert "access_token" in token_reply(engine, "admin@internal", engine.password)


def test_domains_search_the_directory(admin: sdk.Connection) -> None:
    domains = admin.system_service().domains_service()
    by_name = {d.name: d for d in domains.list()}
    assert {"internal", "example.com", "tls.example"} <= set(by_name)
    users = domains.domain_service(by_name["example.com"].id).users_service()
    found = users.list(search="name=a*")
    assert [(u.user_name, u.last_name) for u in found] == [("alice@example.com", "Liddell")]
    assert users.list(search="name=*)(uid=*") == []
    groups = domains.domain_service(by_name["example.com"].id).groups_service()
    assert sorted(g.name for g in groups.list(search="name=e*")) == ["engineers", "everyone"]


def test_roles_predefined_and_custom(admin: sdk.Connection) -> None:
    roles = admin.system_service().roles_service()
    names = {r.name for r in roles.list()}
    assert {"SuperUser", "UserRole", "PowerUserRole", "UserVmManager", "ClusterAdmin",
            "DataCenterAdmin", "HostAdmin", "NetworkAdmin", "StorageAdmin",
            "TemplateAdmin"} <= names
    user_role = next(r for r in roles.list() if r.name == "UserRole")
    permits = {p.name for p in roles.role_service(user_role.id).permits_service().list()}
    assert {"vm_basic_operations", "connect_to_vm", "login"} <= permits
    assert "delete_vm" not in permits

    with pytest.raises(sdk.Error) as unknown:
        roles.add(types.Role(name="Broken", permits=[types.Permit(name="fly_to_the_moon")]))
    assert unknown.value.code == 400
    assert "Broken" not in {r.name for r in roles.list()}

    custom = roles.add(types.Role(name="Starter", administrative=False, permits=[
        types.Permit(name="login"), types.Permit(id="4")]))
    assert custom.mutable is True
    permits_service = roles.role_service(custom.id).permits_service()
    assert {p.name for p in permits_service.list()} == {"login", "vm_basic_operations"}
    permits_service.add(types.Permit(name="connect_to_vm"))
    assert len(permits_service.list()) == 3
    with pytest.raises(sdk.Error) as fixed:
        roles.role_service(user_role.id).permits_service().add(types.Permit(name="delete_vm"))
    assert fixed.value.code == 409
    roles.role_service(custom.id).remove()
    assert "Starter" not in {r.name for r in roles.list()}


@pytest.fixture
def two_vms(admin: sdk.Connection) -> Iterator[tuple[types.Vm, types.Vm]]:
    vms = admin.system_service().vms_service()
    made = tuple(vms.add(types.Vm(name=name, cluster=types.Cluster(name="Default"),
                                  template=types.Template(name="Blank"), memory=256 * MIB))
                 for name in ("mine", "theirs"))
    yield made[0], made[1]
    for vm in made:
        vms.vm_service(vm.id).remove()


def test_a_group_permission_on_one_vm(engine: RunningEngine, admin: sdk.Connection,
                                      two_vms: tuple[types.Vm, types.Vm]) -> None:
    mine, theirs = two_vms
    system = admin.system_service()
    group = system.groups_service().add(types.Group(
        name="everyone", domain=types.Domain(name="example.com")))
    vm_permissions = system.vms_service().vm_service(mine.id).permissions_service()
    given = vm_permissions.add(types.Permission(role=types.Role(name="UserRole"),
                                                group=types.Group(id=group.id)))
    assert given.group.id == group.id and given.vm.id == mine.id
    try:
        # alice is in `everyone` only through staff -> engineers -> everyone
        alice = connect(engine, "alice@example.com", PASSWORDS["alice"])
        vms = alice.system_service().vms_service()
        assert [v.name for v in vms.list(filter=True)] == ["mine"]
        assert [v.name for v in vms.list()] == ["mine"]
        assert vms.vm_service(mine.id).get().name == "mine"
        with pytest.raises(sdk.NotFoundError):
            vms.vm_service(theirs.id).get()
        with pytest.raises(sdk.AuthError) as refused:
            vms.vm_service(mine.id).remove()
        assert refused.value.code == 403
        with pytest.raises(sdk.NotFoundError):
            vms.vm_service(theirs.id).remove()
        with pytest.raises(sdk.AuthError):
            alice.system_service().hosts_service().add(types.Host(
                name="h", address="192.0.2.1", cluster=types.Cluster(name="Default")))
        # the audit log shows alice her own sign-in and what happened to her VM only
        seen = alice.system_service().events_service().list()
        assert {e.vm.id for e in seen if e.vm is not None} == {mine.id}
        assert all((e.user is None or e.vm is not None) or "alice" in (e.description or "")
                   for e in seen)
        assert alice.system_service().jobs_service().list() == []
        # dave is in no group: nothing at all
        dave = connect(engine, "dave@example.com", PASSWORDS["dave"])
        with pytest.raises(sdk.AuthError):
            dave.system_service().vms_service().list()
        dave.close()

        # removed: the next request knows (no role left anywhere: no listing at all)
        vm_permissions.permission_service(given.id).remove()
        with pytest.raises(sdk.NotFoundError):
            vms.vm_service(mine.id).get()
        with pytest.raises(sdk.AuthError) as no_role:
            vms.list(filter=True)
        assert no_role.value.code == 403
        alice.close()
    finally:
        system.groups_service().group_service(group.id).remove()
    events = system.events_service().list(search="severity=warning", max=50)
    assert any("alice@example.com was refused" in (e.description or "") for e in events)


def test_a_cluster_admin_cannot_touch_another_cluster(engine: RunningEngine,
                                                      admin: sdk.Connection) -> None:
    system = admin.system_service()
    dc = system.data_centers_service().add(types.DataCenter(name="dc-b", local=False))
    a = system.clusters_service().list(search="name=Default")[0]
    b = system.clusters_service().add(types.Cluster(name="cluster-b",
                                                    data_center=types.DataCenter(id=dc.id)))
    users = system.users_service()
    bob = users.add(types.User(user_name="bob@example.com",
                               domain=types.Domain(name="example.com")))
    assert bob.user_name == "bob@example.com"
    users.user_service(bob.id).permissions_service().add(types.Permission(
        role=types.Role(name="ClusterAdmin"), cluster=types.Cluster(id=a.id)))
    try:
        conn = connect(engine, "bob@example.com", PASSWORDS["bob"])
        clusters = conn.system_service().clusters_service()
        assert [c.name for c in clusters.list()] == ["Default"]
        changed = clusters.cluster_service(a.id).update(types.Cluster(description="bob's"))
        assert changed.description == "bob's"
        with pytest.raises(sdk.NotFoundError):
            clusters.cluster_service(b.id).update(types.Cluster(description="bob's"))
        # a VM of his cluster stays there: moving it would create it in cluster B
        vms = conn.system_service().vms_service()
        vm = vms.add(types.Vm(name="bobs-vm", cluster=types.Cluster(id=a.id),
                              template=types.Template(name="Blank"), memory=256 * MIB))
        with pytest.raises(sdk.AuthError) as moved:
            vms.vm_service(vm.id).update(types.Vm(cluster=types.Cluster(id=b.id)))
        assert moved.value.code == 403
        assert system.vms_service().vm_service(vm.id).get().cluster.id == a.id
        vms.vm_service(vm.id).remove()
        conn.close()
        assert system.clusters_service().cluster_service(b.id).get().description != "bob's"
    finally:
        users.user_service(bob.id).remove()
        system.clusters_service().cluster_service(b.id).remove()
        system.data_centers_service().data_center_service(dc.id).remove()


def _status(http: httpx.Client, method: str, url: str, token: str | None) -> int:
    headers = {"Content-Type": "application/xml", "Accept": "application/xml"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = None if method in ("GET", "DELETE") else "<action/>"
    return http.request(method, url, headers=headers, content=body).status_code


def test_every_route_refuses_who_may_not_and_serves_who_may(
        engine: RunningEngine, admin: sdk.Connection,
        two_vms: tuple[types.Vm, types.Vm]) -> None:
    """The table of every route (from the router) x {no token, a user whose only role is on
    another VM, the administrator}: 401, refused (403/404), served."""
    from overt.engine.api.app import api_routes
    from overt.engine.api.authorization import rule_for

    own, target = two_vms
    system = admin.system_service()
    dave = system.users_service().add(types.User(user_name="dave@example.com",
                                                 domain=types.Domain(name="example.com")))
    system.vms_service().vm_service(own.id).permissions_service().add(types.Permission(
        role=types.Role(name="UserRole"), user=types.User(id=dave.id)))
    cluster = system.clusters_service().list(search="name=Default")[0]
    real = {"vm": target.id, "cluster": cluster.id, "data_center": cluster.data_center.id}
    stranger = token_reply(engine, "dave@example.com", PASSWORDS["dave"])["access_token"]
    root = token_reply(engine, "admin@internal", engine.password)["access_token"]
    wrong: list[str] = []
    checked = 0
    tls = ssl.create_default_context(cafile=str(engine.ca_file))
    try:
        with httpx.Client(verify=tls) as http:
            for entry in api_routes().entries:
                rule = rule_for(entry.method, entry.path)
                path = entry.path
                for part in [p for p in path.split("/") if p.startswith("{")]:
                    name = part[1:-1]
                    value = real.get(rule.kind or "") if name == rule.param else None
                    path = path.replace(part, str(value or "9e1f1a3b-0000-4000-8000-000000000001"))
                url = engine.url + path
                method = entry.method
                checked += 1
                if _status(http, method, url, None) != 401:
                    wrong.append(f"{method} {entry.path} without a token")
                got = _status(http, method, url, stranger)
                # A read of the system's own settings (trap receivers) needs a permit there.
                guarded = rule.permit not in (None, "login")
                if rule.param is not None or method != "GET" or guarded:
                    if got not in (403, 404):
                        wrong.append(f"{method} {entry.path} as a stranger: {got}")
                elif got in (401, 403) or got >= 500:
                    wrong.append(f"{method} {entry.path} (a listing) as a stranger: {got}")
                if method == "GET":
                    got = _status(http, method, url, root)
                    if got in (401, 403) or got >= 500:
                        wrong.append(f"{method} {entry.path} as the administrator: {got}")
    finally:
        system.users_service().user_service(dave.id).remove()
    assert wrong == []
    assert checked == len(api_routes().entries) > 150


def test_a_power_user_creates_vms_where_allowed_and_manages_them(
        engine: RunningEngine, admin: sdk.Connection) -> None:
    system = admin.system_service()
    dc = system.data_centers_service().add(types.DataCenter(name="dc-c", local=False))
    other = system.clusters_service().add(types.Cluster(name="cluster-c",
                                                        data_center=types.DataCenter(id=dc.id)))
    default = system.clusters_service().list(search="name=Default")[0]
    users = system.users_service()
    bob = users.add(types.User(user_name="bob@example.com",
                               domain=types.Domain(name="example.com")))
    users.user_service(bob.id).permissions_service().add(types.Permission(
        role=types.Role(name="PowerUserRole"), cluster=types.Cluster(id=default.id)))
    try:
        conn = connect(engine, "bob@example.com", PASSWORDS["bob"])
        vms = conn.system_service().vms_service()
        with pytest.raises(sdk.AuthError) as refused:
            vms.add(types.Vm(name="bobs-elsewhere", cluster=types.Cluster(id=other.id),
                             template=types.Template(name="Blank"), memory=256 * MIB))
        assert refused.value.code == 403
        assert system.vms_service().list(search="name=bobs-elsewhere") == []
        made = vms.add(types.Vm(name="bobs", cluster=types.Cluster(id=default.id),
                                template=types.Template(name="Blank"), memory=256 * MIB))
        owners = system.vms_service().vm_service(made.id).permissions_service().list()
        assert [(p.user.id, p.role.id) for p in owners] == [
            (bob.id, "def00006-0000-0000-0000-def000000006")]
        assert [v.name for v in vms.list()] == ["bobs"]
        vms.vm_service(made.id).remove()  # UserVmManager may
        conn.close()
    finally:
        users.user_service(bob.id).remove()
        system.clusters_service().cluster_service(other.id).remove()
        system.data_centers_service().data_center_service(dc.id).remove()


def _portal_sign_in(engine: RunningEngine, user: str, password: str) -> httpx.Response:
    base = engine.url.removesuffix("/ovirt-engine/api")
    tls = ssl.create_default_context(cafile=str(engine.ca_file))
    with httpx.Client(base_url=base, verify=tls) as http:
        form = http.get("/signin")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token is not None
        return http.post("/signin", data={"csrf_token": token.group(1), "username": user,
                                          "password": password, "next": "/vms"})


def test_the_portal_sends_directory_users_to_the_vm_portal_and_administrators_to_theirs(
        engine: RunningEngine, admin: sdk.Connection) -> None:
    user = _portal_sign_in(engine, "alice@example.com", PASSWORDS["alice"])
    assert user.status_code == 303 and user.headers["location"] == "/user"
    assert "overt_session" in user.cookies
    wrong = _portal_sign_in(engine, "alice@example.com", "wrong")
    assert wrong.status_code == 401 and "incorrect" in wrong.text

    system = admin.system_service()
    group = system.groups_service().add(types.Group(
        name="staff", domain=types.Domain(name="example.com")))
    granted = system.permissions_service().add(types.Permission(
        role=types.Role(name="SuperUser"), group=types.Group(id=group.id)))
    try:
        signed_in = _portal_sign_in(engine, "alice@example.com", PASSWORDS["alice"])
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/vms"
        assert "overt_session" in signed_in.cookies
    finally:
        system.permissions_service().permission_service(granted.id).remove()
        system.groups_service().group_service(group.id).remove()


@pytest.mark.slow  # the CLI in child processes
def test_the_cli_signs_in_directory_users(engine: RunningEngine, admin: sdk.Connection,
                                          two_vms: tuple[types.Vm, types.Vm]) -> None:
    mine, _ = two_vms
    system = admin.system_service()
    alice = system.users_service().add(types.User(user_name="alice@example.com",
                                                  domain=types.Domain(name="example.com")))
    system.vms_service().vm_service(mine.id).permissions_service().add(types.Permission(
        role=types.Role(name="UserRole"), user=types.User(id=alice.id)))

    def cli(password: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "OVERT_URL": engine.url, "OVERT_PASSWORD": password,
               "OVERT_CA_FILE": str(engine.ca_file), "OVERT_USER": "alice@example.com"}
        return subprocess.run([sys.executable, "-m", "overt", "vm", "list", "--json"],
                              capture_output=True, text=True, env=env, timeout=120,
                              check=False)

    try:
        listed = cli(PASSWORDS["alice"])
        assert listed.returncode == 0, listed.stderr
        assert [vm["name"] for vm in json.loads(listed.stdout)] == ["mine"]
        refused = cli("wrong")
        assert refused.returncode == 1 and "login failed" in refused.stderr
        assert "Traceback" not in refused.stderr
    finally:
        system.users_service().user_service(alice.id).remove()


@pytest.mark.slow  # the CLI in child processes
def test_the_cli_manages_users_and_permissions(engine: RunningEngine, admin: sdk.Connection,
                                               two_vms: tuple[types.Vm, types.Vm]) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "OVERT_URL": engine.url, "OVERT_PASSWORD": engine.password,
               "OVERT_CA_FILE": str(engine.ca_file)}
        env.pop("OVERT_USER", None)
        return subprocess.run([sys.executable, "-m", "overt", *args], capture_output=True,
                              text=True, env=env, timeout=120, check=False)

    profiles = cli("auth", "profile", "list", "--json")
    assert profiles.returncode == 0, profiles.stderr
    assert {"internal", "example.com"} <= {d["name"] for d in json.loads(profiles.stdout)}
    added = cli("user", "add", "dave@example.com", "--json")
    assert added.returncode == 0, added.stderr
    dave = json.loads(added.stdout)
    try:
        listed = cli("user", "list", "--json")
        assert "dave@example.com" in {u["user_name"] for u in json.loads(listed.stdout)}
        given = cli("permission", "add", "--role", "UserRole", "--user-name",
                    "dave@example.com", "--on", "vm", "--object", "theirs")
        assert given.returncode == 0, given.stderr
        shown = cli("permission", "list", "--on", "vm", "--object", "theirs")
        assert "dave@example.com" in shown.stdout and "UserRole" in shown.stdout
        unknown_role = cli("permission", "add", "--role", "NoSuchRole", "--user-name",
                           "dave@example.com", "--on", "vm", "--object", "theirs")
        assert unknown_role.returncode == 1 and "no role NoSuchRole" in unknown_role.stderr
        unknown_user = cli("user", "add", "nobody@example.com")
        assert unknown_user.returncode == 1 and "Traceback" not in unknown_user.stderr
        conn = connect(engine, "dave@example.com", PASSWORDS["dave"])
        assert [v.name for v in conn.system_service().vms_service().list()] == ["theirs"]
        conn.close()
    finally:
        admin.system_service().users_service().user_service(dave["id"]).remove()


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_permission_path_with_an_encoded_character_is_a_clean_refusal(
        engine: RunningEngine, method: str) -> None:
    """A fuzzer's `/hosts/%09/permissions/ID` answered 500: the object's id was looked up by
    its raw (percent-encoded) URL form. It is a 4xx fault now, like any id that is none."""
    root = token_reply(engine, "admin@internal", engine.password)["access_token"]
    tls = ssl.create_default_context(cafile=str(engine.ca_file))
    with httpx.Client(verify=tls) as http:
        for path in (f"/hosts/%09/permissions/{uuid.uuid4()}", "/vms/%20x/permissions"):
            if path.endswith("permissions") and method == "DELETE":
                continue
            status = _status(http, method, engine.url + path, root)
            assert 400 <= status < 500, (method, path, status)
