"""snmpd.conf for a node: an SNMPv3 user turns v2c off; secrets are checked without being
repeated in any message, and the file is its owner's only."""

from __future__ import annotations

from pathlib import Path

import pytest

from overt.node.snmp.snmpd_conf import (
    SnmpConfigError,
    UsmUser,
    load_usm_user,
    render_snmpd_conf,
    write_snmpd_conf,
)

STATE = Path("/var/lib/overt/node/snmp-state.json")


def test_a_v3_user_gets_reads_and_no_community_is_written() -> None:
    text = render_snmpd_conf(state_file=STATE, user=UsmUser("nms", "auth-pass-1", "priv-pass-1"),
                             community="public", python="/usr/bin/python3")
    lines = text.splitlines()
    assert 'createUser nms SHA "auth-pass-1" AES "priv-pass-1"' in lines
    assert "rouser -s usm nms priv" in lines
    assert not any("community" in line for line in lines[1:])
    assert ("pass_persist .1.3.6.1.4.1.99999 /usr/bin/python3 -m overt.node.snmp "
            f"--state-file {STATE}") in lines
    assert "agentAddress udp:0.0.0.0:161" in lines


def test_without_a_user_the_community_reads() -> None:
    lines = render_snmpd_conf(state_file=STATE, community="s3cret", source="10.0.0.0/8"
                              ).splitlines()
    assert "rocommunity s3cret 10.0.0.0/8" in lines
    assert not any(line.startswith(("createUser", "rouser")) for line in lines)
    with pytest.raises(SnmpConfigError, match="user or a v2c community"):
        render_snmpd_conf(state_file=STATE)
    with pytest.raises(SnmpConfigError, match="no spaces"):
        render_snmpd_conf(state_file=STATE, community="two words")


def test_passphrases_come_from_files_or_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "auth").write_text("from-a-file-1\nignored\n")
    monkeypatch.setenv("OVERT_SNMP_V3_PRIV_PASSPHRASE", "from-the-env-1")
    user = load_usm_user("nms", tmp_path / "auth")
    assert (user.auth, user.priv) == ("from-a-file-1", "from-the-env-1")
    assert "from-a-file-1" not in repr(user) and "from-the-env-1" not in repr(user)


@pytest.mark.parametrize(("name", "auth", "priv", "message"), [
    ("nms", "short", "long-enough-1", "at least 8"),
    ("nms", "long-enough-1", "", "at least 8"),
    ("nms", 'has"quote1', "long-enough-1", "quotes"),
    ("nms", "has space 1", "long-enough-1", "spaces"),
    ("bad user", "long-enough-1", "long-enough-1", "not an SNMPv3 user name"),
])
def test_bad_users_and_passphrases_are_refused_without_repeating_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, auth: str, priv: str,
        message: str) -> None:
    (tmp_path / "auth").write_text(auth)
    monkeypatch.setenv("OVERT_SNMP_V3_PRIV_PASSPHRASE", priv)
    with pytest.raises(SnmpConfigError, match=message) as caught:
        load_usm_user(name, tmp_path / "auth")
    for secret in (auth, priv):
        assert not secret or secret not in str(caught.value)


def test_a_missing_passphrase_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SnmpConfigError, match="cannot read the SNMPv3 authentication"):
        load_usm_user("nms", tmp_path / "nothere", tmp_path / "nothere")


def test_the_file_is_written_whole_and_private(tmp_path: Path) -> None:
    path = tmp_path / "snmp" / "snmpd.conf"
    write_snmpd_conf(path, "one\n")
    write_snmpd_conf(path, "two\n")
    assert path.read_text() == "two\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["snmpd.conf"]
