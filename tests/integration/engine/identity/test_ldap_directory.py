"""The LDAP client against a real OpenLDAP server: sign-in checks, nested groups, escaping,
TLS checks, failover, and pooled connections the server dropped."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from overt.engine.identity.ldap_directory import DirectoryUnavailable, LdapDirectory
from overt.engine.identity.profiles import LdapProfile
from tests.support.engine import free_port
from tests.support.slapd import PASSWORDS, Slapd, start_slapd


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    server = start_slapd(tmp_path_factory.mktemp("slapd"))
    yield server
    server.stop()


def directory(toml: str) -> Iterator[LdapDirectory]:
    found = LdapDirectory(LdapProfile.model_validate(tomllib.loads(toml)["ldap"][0]))
    yield found
    found.close()


@pytest.fixture
def example(slapd: Slapd) -> Iterator[LdapDirectory]:
    yield from directory(slapd.profile_toml())


def test_a_password_is_checked_by_binding_as_the_user(example: LdapDirectory) -> None:
    alice = example.authenticate("alice", PASSWORDS["alice"])
    assert alice is not None
    assert (alice.login, alice.first_name, alice.last_name, alice.email) == \
        ("alice", "Alice", "Liddell", "alice@example.com")
    # staff -> engineers -> everyone: every level counts
    assert [g.name for g in alice.groups] == ["engineers", "everyone", "staff"]
    assert example.authenticate("alice", "wrong") is None
    assert example.authenticate("alice", "") is None  # an anonymous bind would succeed
    assert example.authenticate("carol", PASSWORDS["carol"]) is None  # filtered out: disabled
    assert example.authenticate("*", PASSWORDS["alice"]) is None
    assert example.authenticate("*)(uid=*", "x") is None


def test_searches_escape_all_but_the_wildcard(example: LdapDirectory) -> None:
    assert [u.login for u in example.search_users("*")] == ["alice", "bob", "dave"]
    assert example.search_users("*)(|(uid=*") == []
    assert [g.name for g in example.search_groups("st*")] == ["staff"]


def test_a_pooled_connection_the_server_dropped_is_replaced(example: LdapDirectory) -> None:
    assert example.find_user("bob") is not None
    [pooled] = example._idle
    pooled.socket.close()  # as a server restart or an idle timeout would
    bob = example.find_user("bob")
    assert bob is not None and bob.login == "bob"
    assert example._idle and example._idle[0] is not pooled


def test_tls_is_checked_against_the_ca(slapd: Slapd, tmp_path: Path) -> None:
    for toml in (slapd.profile_toml(start_tls=True, ca_file=slapd.ca_file),
                 slapd.profile_toml(servers=[slapd.ldaps_url], ca_file=slapd.ca_file)):
        for checked in directory(toml):
            assert checked.authenticate("bob", PASSWORDS["bob"]) is not None
    other_ca = tmp_path / "other.pem"
    other_ca.write_bytes(Path("/etc/ssl/certs/ca-certificates.crt").read_bytes())
    for toml in (slapd.profile_toml(start_tls=True, ca_file=other_ca),
                 slapd.profile_toml(servers=[slapd.ldaps_url], ca_file=other_ca)):
        for refused in directory(toml):
            with pytest.raises(DirectoryUnavailable):
                refused.authenticate("bob", PASSWORDS["bob"])


def test_a_dead_server_is_skipped_and_all_dead_is_said_plainly(slapd: Slapd) -> None:
    dead = f"ldap://127.0.0.1:{free_port()}"
    for failover in directory(slapd.profile_toml(servers=[dead, slapd.url])):
        assert failover.authenticate("dave", PASSWORDS["dave"]) is not None
        assert failover._preferred == 1  # the next sign-in asks the live one first
    for down in directory(slapd.profile_toml(servers=[dead])):
        with pytest.raises(DirectoryUnavailable) as unavailable:
            down.authenticate("dave", PASSWORDS["dave"])
        assert "cannot be reached" in unavailable.value.detail
        assert "internal users can still sign in" in unavailable.value.detail
