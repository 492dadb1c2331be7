"""The pass_persist exporter, trap targets and communities, without net-snmp."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydantic import ValidationError

from overt.config import NodeSettings
from overt.node.snmp.pass_persist import serve
from overt.node.snmp.snapshot import NodeSnapshot, VmRow, read_snapshot, write_snapshot
from overt.node.snmp.traps import (
    TrapError,
    TrapSender,
    default_engine_id,
    load_community,
    parse_target,
)
from overt.snmp.trap import V3, V2c, check_engine_id

ROOT = ".1.3.6.1.4.1.99999"


def _ask(state_file: Path, text: str) -> str:
    out = io.StringIO()
    serve(state_file, io.StringIO(text), out)
    return out.getvalue()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state.json"
    write_snapshot(path, NodeSnapshot(host_name="n1", host_uuid="u1", vms=(
        VmRow("web\nx", "id-1", "crashed", vcpus=1, memory_mib=64),)))
    return path


def test_ping_get_getnext_and_the_end_of_the_subtree(state: Path) -> None:
    assert _ask(state, "PING\n") == "PONG\n"
    assert _ask(state, f"get\n{ROOT}.1.1.1.0\n") == f"{ROOT}.1.1.1.0\nstring\nn1\n"
    assert _ask(state, f"getnext\n{ROOT}\n") == f"{ROOT}.1.1.1.0\nstring\nn1\n"
    assert _ask(state, f"getnext\n{ROOT}.1.1.4.0\n") == f"{ROOT}.1.2.1.1.1\ninteger\n1\n"
    # a newline in a name cannot break the protocol's framing
    assert _ask(state, f"get\n{ROOT}.1.2.1.2.1\n") == f"{ROOT}.1.2.1.2.1\nstring\nweb x\n"
    assert _ask(state, f"get\n{ROOT}.1.2.1.4.1\n") == f"{ROOT}.1.2.1.4.1\ninteger\n6\n"
    assert _ask(state, f"getnext\n{ROOT}.1.2.1.6.1\n") == "NONE\n"
    assert _ask(state, f"get\n{ROOT}.1.2.1.2.9\n") == "NONE\n"


def test_sets_are_refused_and_garbage_gets_none(state: Path) -> None:
    assert _ask(state, f"set\n{ROOT}.1.1.1.0\nstring evil\n") == "not-writable\n"
    assert read_snapshot(state) is not None and read_snapshot(state).host_name == "n1"  # type: ignore[union-attr]
    assert _ask(state, "get\nnot.an.oid\n") == "NONE\n"
    assert _ask(state, "bogus\n") == "NONE\n"


def test_a_missing_or_broken_state_answers_none(tmp_path: Path) -> None:
    assert _ask(tmp_path / "absent.json", f"getnext\n{ROOT}\n") == "NONE\n"
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert _ask(broken, f"getnext\n{ROOT}\n") == "NONE\n"


@pytest.mark.parametrize("text", ["", ":162", "host:", "host:0", "host:70000", "h:1:2x",
                                  "[::1", "[::1]x", "host:abc"])
def test_bad_trap_targets_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="trap target"):
        parse_target(text)
    with pytest.raises(ValidationError):
        NodeSettings(snmp_trap_target=text)


def test_trap_targets() -> None:
    assert parse_target("10.0.0.5") == ("10.0.0.5", 162)
    assert parse_target("nms.example:1162") == ("nms.example", 1162)
    assert parse_target("[::1]:1162") == ("::1", 1162)
    assert parse_target("fe80::1") == ("fe80::1", 162)


def test_the_community_has_no_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OVERT_SNMP_COMMUNITY", raising=False)
    with pytest.raises(TrapError, match="no SNMP community"):
        load_community()
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(TrapError, match="no SNMP community"):
        load_community(empty)
    given = tmp_path / "community"
    given.write_text("s3cret-community\n")
    assert load_community(given) == "s3cret-community"
    monkeypatch.setenv("OVERT_SNMP_COMMUNITY", "from-env")
    assert load_community() == "from-env"


def test_the_community_never_reaches_the_command_line() -> None:
    sender = TrapSender("127.0.0.1:1162", V2c("hidden-community"))
    argv = sender.command(VmRow("web", "id", "running"), 1)
    assert "hidden-community" not in " ".join(argv)


@pytest.mark.parametrize("text", ["a b", "-host", "host_1:162", "1.2.3.4.5:7", "[nms]:162"])
def test_trap_target_hosts_must_be_addresses_or_names(text: str) -> None:
    with pytest.raises(ValueError, match="trap target"):
        parse_target(text)


def test_v3_passphrases_never_reach_the_command_line() -> None:
    sender = TrapSender("127.0.0.1:1162", V3("overt-node", "auth-secret-1", "priv-secret-2",
                                             "0x80001f88046e6f6465"))
    argv = " ".join(sender.command(VmRow("web", "id", "running"), 1))
    assert "auth-secret-1" not in argv and "priv-secret-2" not in argv
    assert "-v 3 -e 0x80001f88046e6f6465" in argv
    assert "auth-secret-1" not in repr(sender) and "priv-secret-2" not in repr(sender)


@pytest.mark.parametrize(("hostname", "expected"), [
    ("node-b", "0x80001f88046e6f64652d62"),
    ("", "0x80001f88046f766572742d6e6f6465"),
    ("n" * 40, "0x80001f8804" + "6e" * 27),
])
def test_the_default_engine_id_comes_from_the_host_name(hostname: str, expected: str) -> None:
    engine_id = default_engine_id(hostname)
    assert engine_id == expected and check_engine_id(engine_id) == engine_id


@pytest.mark.parametrize("engine_id", ["0x12", "node-b", "0x" + "ab" * 33])
def test_a_bad_trap_engine_id_is_a_settings_error(engine_id: str) -> None:
    with pytest.raises(ValueError, match="snmp_trap_engine_id"):
        NodeSettings(snmp_trap_engine_id=engine_id)
