"""A signed-in VM Portal user forges requests about what is not theirs: actions and
consoles of another user's VM, a VM created in a cluster where they hold no role, the
admin portal's own routes. The server refuses each (404 for what they may not see, 403
for what they may not do) and nothing changes; what is theirs works."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from sqlalchemy import func, select
from starlette.routing import Route

from overt.engine.db.tables import AuditEvent, Job, Permission, User, Vm, utcnow
from overt.engine.identity.roles import POWER_USER, USER_ROLE, USER_VM_MANAGER
from overt.engine.web import user_portal
from tests.support.engine import RunningEngine
from tests.support.internal_users import add_internal_user, give_role
from tests.support.no_nodes import engine_with_admin

URSULA = "Ursula-Pass-2026"
MIB = 2**20


class Site:
    def __init__(self, engine: RunningEngine, admin: sdk.Connection) -> None:
        self.engine = engine
        system = admin.system_service()
        vms = system.vms_service()
        default = system.clusters_service().list(search="name=Default")[0]
        dc = system.data_centers_service().add(types.DataCenter(name="dc-other", local=False))
        self.other_cluster = system.clusters_service().add(types.Cluster(
            name="elsewhere", data_center=types.DataCenter(id=dc.id)))
        # hers (UserRole); another's in her cluster (seen through her PowerUserRole there,
        # which does not start VMs); another's in a cluster where she holds no role
        self.mine, self.neighbours, self.theirs = (
            vms.add(types.Vm(name=name, cluster=types.Cluster(id=cluster),
                             template=types.Template(name="Blank"), memory=256 * MIB))
            for name, cluster in (("ursulas", default.id), ("neighbours", default.id),
                                  ("victors", self.other_cluster.id)))
        self.default = default
        self.ursula = add_internal_user(engine, "ursula", URSULA)
        give_role(engine, self.ursula, USER_ROLE.id, "vm", uuid.UUID(self.mine.id))
        give_role(engine, self.ursula, POWER_USER.id, "cluster", uuid.UUID(self.default.id))

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.engine.loop).result(timeout=30)

    def jobs_of(self, vm_id: str) -> int:
        async def count() -> int:
            async with self.engine.runtime.db.transaction() as session:
                return int((await session.execute(select(func.count()).select_from(Job).where(
                    Job.vm_id == uuid.UUID(vm_id)))).scalar_one())
        return int(self.run(count()))

    def vm_named(self, name: str) -> Vm | None:
        async def find() -> Vm | None:
            async with self.engine.runtime.db.transaction() as session:
                return (await session.execute(select(Vm).where(Vm.name == name))
                        ).scalar_one_or_none()
        found: Vm | None = self.run(find())
        return found


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with engine_with_admin(Path(tmp_path_factory.mktemp("engine"))) as (engine, admin):
        yield Site(engine, admin)


class Portal:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.csrf = ""

    def sign_in(self, user: str, password: str) -> httpx.Response:
        self.http.get("/signin")
        answer = self.http.post("/signin", data={
            "csrf_token": self.http.cookies["overt_signin"], "username": user,
            "password": password, "next": "/"})
        if answer.status_code == 303:
            page = self.http.get(answer.headers["location"])
            found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert found is not None, page.text[:500]
            self.csrf = found.group(1)
        return answer

    def post(self, path: str, **form: str) -> httpx.Response:
        return self.http.post(path, data={"csrf_token": self.csrf, **form})


def _client(engine: RunningEngine) -> httpx.Client:
    return httpx.Client(base_url=engine.url.removesuffix("/ovirt-engine/api"), timeout=30,
                        verify=ssl.create_default_context(cafile=str(engine.ca_file)))


@pytest.fixture(scope="module")
def ursula(site: Site) -> Iterator[Portal]:
    """Signed in once for the module (each sign-in costs a password hash)."""
    with _client(site.engine) as http:
        portal = Portal(http)
        answer = portal.sign_in("ursula@internal", URSULA)
        assert answer.status_code == 303 and answer.headers["location"] == "/user"
        yield portal


def test_the_vm_portal_lists_only_her_vms(ursula: Portal) -> None:
    page = ursula.http.get("/user")
    assert page.status_code == 200
    assert 'data-vm="ursulas"' in page.text
    assert "victors" not in page.text
    assert 'aria-label="Start ursulas"' in page.text  # UserRole: vm_basic_operations
    assert 'data-vm="neighbours"' in page.text  # PowerUserRole on the cluster: seen...
    assert 'aria-label="Start neighbours"' not in page.text  # ...but not operated


@pytest.mark.parametrize("action", ["start", "stop", "shutdown", "reboot"])
def test_an_action_on_another_users_vm_is_not_found_and_does_nothing(
        site: Site, ursula: Portal, action: str) -> None:
    before = site.jobs_of(site.theirs.id)
    refused = ursula.post(f"/user/vms/{site.theirs.id}/{action}")
    assert refused.status_code == 404
    assert "no permission on it" in refused.text
    assert site.jobs_of(site.theirs.id) == before
    # the admin portal's route for the same action refuses a non-administrator too
    refused = ursula.post(f"/vms/{site.theirs.id}/{action}", confirmed="yes")
    assert refused.status_code == 403
    assert site.jobs_of(site.theirs.id) == before


def test_an_action_her_role_does_not_allow_is_forbidden_and_does_nothing(
        site: Site, ursula: Portal) -> None:
    refused = ursula.post(f"/user/vms/{site.neighbours.id}/start")
    assert refused.status_code == 403
    assert "vm_basic_operations permit" in refused.text
    assert site.jobs_of(site.neighbours.id) == 0
    assert ursula.post(f"/user/vms/{site.neighbours.id}/console/ticket").status_code == 403


def _vm_routes() -> list[tuple[str, str]]:
    """Every VM Portal route about one VM, as (method, path): from the router, so a route
    added later is attacked here the day it exists."""
    found = []
    for route in user_portal.ROUTES:
        assert isinstance(route, Route)
        if "{vm_id}" in route.path:
            for method in sorted((route.methods or set()) - {"HEAD"}):
                found.append((method, route.path))
    return found


@pytest.mark.parametrize(("method", "path"), _vm_routes())
def test_every_vm_route_refuses_another_users_vm(site: Site, ursula: Portal, method: str,
                                                 path: str) -> None:
    url = path.replace("{vm_id}", site.theirs.id).replace("{action}", "start")
    answer = ursula.http.get(url) if method == "GET" else ursula.post(url)
    assert answer.status_code == 404, (method, url)
    assert site.jobs_of(site.theirs.id) == 0


def test_her_own_vm_gets_past_the_permission_check(site: Site, ursula: Portal) -> None:
    """No hosts here: her start reaches the scheduler, which says why it cannot run."""
    answer = ursula.post(f"/user/vms/{site.mine.id}/start")
    assert answer.status_code == 409, answer.text[:500]
    assert "host" in answer.text and "permit" not in answer.text


def test_another_users_console_is_not_found(site: Site, ursula: Portal) -> None:
    assert ursula.http.get(f"/user/vms/{site.theirs.id}/console").status_code == 404
    ticket = ursula.post(f"/user/vms/{site.theirs.id}/console/ticket")
    assert ticket.status_code == 404 and "error" in ticket.json()
    assert site.jobs_of(site.theirs.id) == 0
    assert ursula.post(f"/vms/{site.theirs.id}/console/ticket").status_code == 403


def test_a_vm_is_created_only_where_a_role_allows_it(site: Site, ursula: Portal) -> None:
    blank = "00000000-0000-0000-0000-000000000000"
    refused = ursula.post("/user/vms", name="sneaky", cluster=site.other_cluster.id,
                          template=blank, memory_mib="256")
    assert refused.status_code == 403
    assert "create_vm permit on that cluster" in refused.text
    assert site.vm_named("sneaky") is None
    form = ursula.http.get("/user/vms/new").text
    assert "Default" in form and "elsewhere" not in form

    made = ursula.post("/user/vms", name="ursulas-new", cluster=site.default.id,
                       template=blank, memory_mib="256")
    assert made.status_code == 303, made.text[:500]
    vm = site.vm_named("ursulas-new")
    assert vm is not None and str(vm.cluster_id) == site.default.id

    async def owners() -> list[tuple[uuid.UUID | None, uuid.UUID]]:
        async with site.engine.runtime.db.transaction() as session:
            return [(p.user_id, p.role_id) for p in (await session.execute(
                select(Permission).where(Permission.object_id == vm.id))).scalars()]
    assert site.run(owners()) == [(site.ursula, USER_VM_MANAGER.id)]
    assert 'data-vm="ursulas-new"' in ursula.http.get("/user").text


def test_the_admin_portal_sends_her_to_the_vm_portal_and_audits_refusals(
        site: Site, ursula: Portal) -> None:
    answer = ursula.http.get("/vms")
    assert answer.status_code == 303 and answer.headers["location"] == "/user"
    assert ursula.post("/datacenters", name="mine").status_code == 403

    async def refusals() -> int:
        async with site.engine.runtime.db.transaction() as session:
            return int((await session.execute(select(func.count()).select_from(AuditEvent)
                        .where(AuditEvent.user_id == site.ursula,
                               AuditEvent.description.like("%was refused%in the portal%"))
                        )).scalar_one())
    assert site.run(refusals()) >= 1


def test_the_admin_portals_live_feed_is_closed_to_her(ursula: Portal) -> None:
    """The feed tells of every VM, host and event: not for a VM Portal user."""
    refused = ursula.http.get("/events/stream")
    assert refused.status_code == 403
    assert "event:" not in refused.text


def test_a_forged_request_without_the_csrf_token_is_refused(site: Site, ursula: Portal
                                                            ) -> None:
    before = site.jobs_of(site.mine.id)
    refused = ursula.http.post(f"/user/vms/{site.mine.id}/stop")
    assert refused.status_code == 403
    assert site.jobs_of(site.mine.id) == before


def test_changing_her_password_needs_the_current_one(site: Site) -> None:
    login = "paula"
    add_internal_user(site.engine, login, "Paula-Pass-2026")
    with _client(site.engine) as http:
        portal = Portal(http)
        assert portal.sign_in(f"{login}@internal", "Paula-Pass-2026").status_code == 303
        wrong = portal.post("/user/password", password="not-it", new_password="Fresh-Secret-2027!",
                            confirm_password="Fresh-Secret-2027!")
        assert wrong.status_code == 400 and "current password is incorrect" in wrong.text
        differ = portal.post("/user/password", password="Paula-Pass-2026",
                             new_password="Fresh-Secret-2027!", confirm_password="other")
        assert differ.status_code == 400 and "confirmation differ" in differ.text
        weak = portal.post("/user/password", password="Paula-Pass-2026", new_password="a",
                           confirm_password="a")
        assert weak.status_code == 400 and "password policy" in weak.text
        done = portal.post("/user/password", password="Paula-Pass-2026",
                           new_password="Fresh-Secret-2027!", confirm_password="Fresh-Secret-2027!")
        assert done.status_code == 200 and "Your password was changed" in done.text
    with _client(site.engine) as http:
        assert Portal(http).sign_in(f"{login}@internal", "Paula-Pass-2026").status_code == 401
    with _client(site.engine) as http:
        assert Portal(http).sign_in(f"{login}@internal", "Fresh-Secret-2027!").status_code == 303


def test_an_expired_password_must_be_changed_at_sign_in(site: Site) -> None:
    login = "oscar"
    user_id = add_internal_user(site.engine, login, "Oscar-Pass-2026")

    async def age() -> None:
        async with site.engine.runtime.db.transaction() as session:
            row = await session.get(User, user_id)
            assert row is not None
            row.password_changed_at = utcnow() - dt.timedelta(days=400)
    site.run(age())
    with _client(site.engine) as http:
        portal = Portal(http)
        asked = portal.sign_in(f"{login}@internal", "Oscar-Pass-2026")
        assert asked.status_code == 200 and "Your password has expired" in asked.text
        assert "overt_session" not in http.cookies
        assert http.get("/user").status_code == 303  # still signed out
        token = http.cookies["overt_signin"]
        forged = http.post("/password", data={
            "username": f"{login}@internal", "password": "Oscar-Pass-2026",
            "new_password": "Second-Secret-2027!", "confirm_password": "Second-Secret-2027!"})
        assert forged.status_code == 403  # no sign-in form token
        changed = http.post("/password", data={
            "csrf_token": token, "username": f"{login}@internal",
            "password": "Oscar-Pass-2026", "new_password": "Second-Secret-2027!",
            "confirm_password": "Second-Secret-2027!"})
        assert changed.status_code == 200 and "Sign in with the new one" in changed.text
    with _client(site.engine) as http:
        assert Portal(http).sign_in(f"{login}@internal", "Second-Secret-2027!").status_code == 303
