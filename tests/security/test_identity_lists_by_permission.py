"""A user with UserRole on one VM, through the official SDK, tries to learn about other users:
who they are, what roles they hold, on what. oVirt's user view shows them their own user,
their own roles and the permissions on what they may see; the rest is not found, and
writes are refused."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from overt.engine.identity.roles import CLUSTER_ADMIN, USER_ROLE
from tests.support.engine import RunningEngine
from tests.support.internal_users import add_internal_user, give_role
from tests.support.no_nodes import engine_with_admin

URSULA, VICTOR = "Ursula-Pass-2026", "Victor-Pass-2026"
MIB = 2**20


class Site:
    def __init__(self, engine: RunningEngine, admin: sdk.Connection) -> None:
        self.engine, self.admin = engine, admin
        vms = admin.system_service().vms_service()
        self.mine, self.theirs = (
            vms.add(types.Vm(name=name, cluster=types.Cluster(name="Default"),
                             template=types.Template(name="Blank"), memory=256 * MIB))
            for name in ("ursulas", "victors"))
        self.ursula = add_internal_user(engine, "ursula", URSULA)
        self.victor = add_internal_user(engine, "victor", VICTOR)
        give_role(engine, self.ursula, USER_ROLE.id, "vm", uuid.UUID(self.mine.id))
        give_role(engine, self.victor, USER_ROLE.id, "vm", uuid.UUID(self.theirs.id))
        cluster = admin.system_service().clusters_service().list(search="name=Default")[0]
        give_role(engine, self.victor, CLUSTER_ADMIN.id, "cluster", uuid.UUID(cluster.id))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with engine_with_admin(Path(tmp_path_factory.mktemp("engine"))) as (engine, admin):
        yield Site(engine, admin)


@pytest.fixture
def ursula(site: Site) -> Iterator[sdk.Connection]:
    conn = sdk.Connection(url=site.engine.url, username="ursula@internal", password=URSULA,
                          ca_file=str(site.engine.ca_file))
    yield conn
    conn.close()


def test_a_user_role_user_lists_only_their_own_user(site: Site, ursula: sdk.Connection
                                                    ) -> None:
    users = ursula.system_service().users_service()
    assert [u.user_name for u in users.list()] == ["ursula@internal"]
    internal = next(d for d in ursula.system_service().domains_service().list()
                    if d.name == "internal")
    found = ursula.system_service().domains_service().domain_service(internal.id)
    assert [u.user_name for u in found.users_service().list()] == ["ursula@internal"]
    # the administrator still sees everyone
    assert {"admin@internal", "ursula@internal", "victor@internal"} <= {
        u.user_name for u in site.admin.system_service().users_service().list()}


def test_a_user_role_user_cannot_read_another_user(site: Site, ursula: sdk.Connection) -> None:
    users = ursula.system_service().users_service()
    with pytest.raises(sdk.NotFoundError):
        users.user_service(str(site.victor)).get()
    assert users.user_service(str(site.ursula)).get().user_name == "ursula@internal"


def test_a_user_role_user_cannot_list_other_users_permissions(site: Site,
                                                              ursula: sdk.Connection) -> None:
    system = ursula.system_service()
    with pytest.raises(sdk.NotFoundError):
        system.users_service().user_service(str(site.victor)).permissions_service().list()
    assert system.permissions_service().list() == []  # nobody's on the system for her
    own = system.users_service().user_service(str(site.ursula)).permissions_service().list()
    assert [(p.role.id, p.vm.id) for p in own] == [(str(USER_ROLE.id), site.mine.id)]
    # on her VM she sees its permissions; victor's VM is not found
    vms = system.vms_service()
    on_mine = vms.vm_service(site.mine.id).permissions_service().list()
    assert {p.user.id for p in on_mine} == {str(site.ursula)}
    with pytest.raises(sdk.NotFoundError):
        vms.vm_service(site.theirs.id).permissions_service().list()
    # only the roles she holds
    assert [r.name for r in system.roles_service().list()] == ["UserRole"]
    with pytest.raises(sdk.NotFoundError):
        system.roles_service().role_service(str(CLUSTER_ADMIN.id)).get()
    assert system.groups_service().list() == []


def test_writes_are_still_refused(site: Site, ursula: sdk.Connection) -> None:
    system = ursula.system_service()
    with pytest.raises(sdk.AuthError) as refused:
        system.permissions_service().add(types.Permission(
            role=types.Role(name="SuperUser"), user=types.User(id=str(site.ursula))))
    assert refused.value.code == 403
    with pytest.raises(sdk.AuthError) as refused:
        system.vms_service().vm_service(site.mine.id).permissions_service().add(
            types.Permission(role=types.Role(name="UserVmManager"),
                             user=types.User(id=str(site.ursula))))
    assert refused.value.code == 403
    assert not [p for p in site.admin.system_service().permissions_service().list()
                if p.user is not None and p.user.id == str(site.ursula)]


def test_a_cluster_admin_sees_the_users_it_may_give_roles_to(site: Site) -> None:
    victor = sdk.Connection(url=site.engine.url, username="victor@internal", password=VICTOR,
                            ca_file=str(site.engine.ca_file))
    try:
        system = victor.system_service()
        assert "ursula@internal" in {u.user_name for u in system.users_service().list()}
        on_hers = system.vms_service().vm_service(site.mine.id).permissions_service().list()
        assert {p.user.id for p in on_hers} == {str(site.ursula)}
        assert system.permissions_service().list() == []
    finally:
        victor.close()
