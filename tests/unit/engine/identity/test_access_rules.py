"""The authorization rules of every API route, the grants they are checked against, and the
parts of sign-in that need no directory (profile files, principals, filter escaping)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from overt.engine.api.app import api_routes
from overt.engine.api.authorization import COLLECTIONS, Rule, rule_for
from overt.engine.db.tables import User
from overt.engine.identity.access import SYSTEM, Access, Grant
from overt.engine.identity.ldap_directory import wildcard_filter
from overt.engine.identity.profiles import INTERNAL, ProfileError, load_profiles, split_principal
from overt.engine.identity.roles import PERMITS_BY_NAME, PREDEFINED, USER_ROLE

ROUTES = [(e.method, e.path) for e in api_routes().entries]


@pytest.mark.parametrize("method,path", ROUTES)
def test_every_route_has_a_rule_that_names_real_permits_and_params(method: str,
                                                                   path: str) -> None:
    rule = rule_for(method, path)
    if rule.permit is not None:
        assert rule.permit in PERMITS_BY_NAME
    if rule.param is not None:
        assert "{" + rule.param + "}" in path
    # no change is ever allowed by a bare "read" rule
    if method != "GET":
        assert rule.permit not in (None, "login"), (method, path)


@pytest.mark.parametrize("method,path,expected", [
    ("GET", "/", Rule("login")),
    ("GET", "/vms", Rule(None, "vm")),
    ("POST", "/vms", Rule("create_vm", "vm", anywhere=True)),
    ("GET", "/vms/{vm_id}", Rule(None, "vm", "vm_id")),
    ("DELETE", "/vms/{vm_id}", Rule("delete_vm", "vm", "vm_id")),
    ("PUT", "/vms/{vm_id}", Rule("edit_vm_properties", "vm", "vm_id")),
    ("POST", "/vms/{vm_id}/start", Rule("vm_basic_operations", "vm", "vm_id")),
    ("POST", "/vms/{vm_id}/ticket", Rule("connect_to_vm", "vm", "vm_id")),
    ("POST", "/vms/{vm_id}/permissions", Rule("manipulate_permissions", "vm", "vm_id")),
    ("PUT", "/clusters/{cluster_id}", Rule("edit_cluster_configuration", "cluster",
                                           "cluster_id")),
    ("POST", "/hosts/{host_id}/deactivate", Rule("manipulate_host", "host", "host_id")),
    ("POST", "/users", Rule("manipulate_users")),
    ("POST", "/roles", Rule("manipulate_roles")),
    ("POST", "/permissions", Rule("manipulate_permissions")),
    ("POST", "/users/{user_id}/permissions", Rule("manipulate_permissions")),
    ("POST", "/tags", Rule("configure_engine")),
    ("GET", "/snmpmanagers", Rule("configure_engine")),
    ("POST", "/snmpmanagers", Rule("configure_engine")),
    ("POST", "/users/{user_id}/eventsubscriptions", Rule("manipulate_users")),
])
def test_rules_follow_ovirt_permits(method: str, path: str, expected: Rule) -> None:
    assert rule_for(method, path) == expected


def test_every_object_collection_is_a_kind_the_access_model_knows() -> None:
    from overt.engine.identity.access import KINDS
    assert set(COLLECTIONS.values()) <= set(KINDS)


def _access(*grants: Grant, administrator: bool = False) -> Access:
    return Access(User(user_name="u@x", domain="x", administrator=administrator,
                       directory_groups=[]), list(grants))


def test_permits_are_inherited_down_the_chain_only() -> None:
    dc, cluster, vm, other = (uuid.uuid4() for _ in range(4))
    chain = [("vm", vm), ("cluster", cluster), ("data_center", dc), (SYSTEM, None)]
    on_cluster = _access(Grant("cluster", cluster, PREDEFINED[USER_ROLE.id].permits))
    assert "vm_basic_operations" in on_cluster.permits_on(chain)
    assert on_cluster.permits_on([("vm", other), ("cluster", uuid.uuid4()), (SYSTEM, None)]) \
        == frozenset()
    assert not on_cluster.superuser and not on_cluster.system_wide
    assert _access(administrator=True).superuser
    superuser = _access(Grant(SYSTEM, None, PREDEFINED[uuid.UUID(int=1)].permits))
    assert superuser.superuser and "delete_vm" in superuser.permits_on(chain)


def test_predefined_roles_hold_only_known_permits() -> None:
    names = {r.name for r in PREDEFINED.values()}
    assert {"SuperUser", "UserRole", "PowerUserRole", "UserVmManager", "ClusterAdmin",
            "DataCenterAdmin", "HostAdmin", "NetworkAdmin", "StorageAdmin",
            "TemplateAdmin"} == names
    for role in PREDEFINED.values():
        assert role.permits <= set(PERMITS_BY_NAME)
        assert "login" in role.permits
    assert "delete_vm" not in USER_ROLE.permits


def test_filter_values_are_escaped_except_the_wildcard() -> None:
    assert wildcard_filter("*)(uid=*") == "*\\29\\28uid=*"
    assert wildcard_filter("al\\ice") == "al\\5cice"
    assert wildcard_filter("a*") == "a*"


def test_principals_name_their_profile() -> None:
    assert split_principal("alice@example.com") == ("alice", "example.com")
    assert split_principal("admin") == ("admin", INTERNAL)
    assert split_principal("a@b@corp") == ("a@b", "corp")


def test_profiles_file(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[[ldap]]\nname = "corp"\nservers = ["ldaps://ldap1", "ldap://ldap2"]\n'
                    'user_base = "ou=people,dc=corp"\ngroup_base = "ou=groups,dc=corp"\n')
    [profile] = load_profiles(good)
    assert profile.servers == ["ldaps://ldap1", "ldap://ldap2"]
    assert load_profiles(None) == []
    for bad in ('[[ldap]]\nname = "internal"\nservers = ["ldap://x"]\nuser_base = "a"\n'
                'group_base = "b"\n',
                '[[ldap]]\nname = "corp"\nservers = ["http://x"]\nuser_base = "a"\n'
                'group_base = "b"\n',
                '[[ldap]]\nname = "corp"\nservers = ["ldap://x"]\nuser_base = "a"\n'
                'group_base = "b"\nunknown_setting = 1\n',
                "not toml ["):
        path = tmp_path / "bad.toml"
        path.write_text(bad)
        with pytest.raises(ProfileError):
            load_profiles(path)
