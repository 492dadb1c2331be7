"""`overt notify`: an SNMPv3 manager from passphrase files, a subscription to it, and the
faults for a bad address or an unknown event, as an administrator runs them."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from overt.cli.main import app
from tests.support.engine import RunningEngine, start_engine
from tests.support.no_nodes import NoNodes


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    running = start_engine(tmp_path_factory.mktemp("engine"), transport=NoNodes())
    yield running
    running.stop()


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


def cli(engine: RunningEngine, *args: str) -> Done:
    env = {"OVERT_URL": engine.url, "OVERT_USER": "admin@internal",
           "OVERT_PASSWORD": engine.password, "OVERT_CA_FILE": str(engine.ca_file),
           "COLUMNS": "200"}
    result = CliRunner().invoke(app, list(args), env=env)
    return Done(result.exit_code, result.stdout, result.stderr)


def test_a_v3_manager_and_a_subscription_from_the_cli(engine: RunningEngine,
                                                      tmp_path: Path) -> None:
    auth, priv = tmp_path / "auth", tmp_path / "priv"
    auth_text, priv_text = "auth-" + secrets.token_hex(8), "priv-" + secrets.token_hex(8)
    auth.write_text(auth_text + "\n")
    priv.write_text(priv_text + "\n")
    added = cli(engine, "notify", "add-manager", "nms", "--address", "127.0.0.1", "--port",
                "1162", "--v3-user", "overt", "--auth-passphrase-file", str(auth),
                "--priv-passphrase-file", str(priv))
    assert added.returncode == 0, added.stdout + added.stderr
    assert "SNMP manager nms added (v3, engine id 0x80001f8804" in added.stdout
    listed = cli(engine, "notify", "managers", "--json")
    [manager] = json.loads(listed.stdout)
    assert (manager["name"], manager["version"], manager["user"]) == ("nms", "v3", "overt")
    assert auth_text not in listed.stdout and priv_text not in listed.stdout

    made = cli(engine, "notify", "subscribe", "host_failure", "--manager", "nms")
    assert made.returncode == 0 and "Subscribed to host_failure" in made.stdout
    subs = json.loads(cli(engine, "notify", "subscriptions", "--json").stdout)
    assert [(s["event"], s["address"]) for s in subs] == [("host_failure", "nms")]

    refused = cli(engine, "notify", "remove-manager", "nms")
    assert refused.returncode != 0 and "remove those first" in refused.stdout + refused.stderr
    assert cli(engine, "notify", "unsubscribe", "host_failure").returncode == 0
    assert cli(engine, "notify", "remove-manager", "nms").returncode == 0
    assert json.loads(cli(engine, "notify", "managers", "--json").stdout) == []


def test_bad_input_is_refused_with_the_reason(engine: RunningEngine, tmp_path: Path) -> None:
    community = tmp_path / "community"
    community.write_text("c-" + secrets.token_hex(6))
    bad = cli(engine, "notify", "add-manager", "m", "--address", "10.0.0.300",
              "--community-file", str(community))
    assert bad.returncode != 0
    assert "is not an address or name" in bad.stdout + bad.stderr
    unknown = cli(engine, "notify", "subscribe", "irs_failure")
    assert unknown.returncode != 0
    assert "is not one this engine notifies" in unknown.stdout + unknown.stderr
    assert json.loads(cli(engine, "notify", "managers", "--json").stdout) == []
    assert json.loads(cli(engine, "notify", "subscriptions", "--json").stdout) == []


def test_a_manager_changed_and_the_events_listed_from_the_cli(engine: RunningEngine,
                                                              tmp_path: Path) -> None:
    community = tmp_path / "community"
    community.write_text("c-" + secrets.token_hex(6) + "\n")
    assert cli(engine, "notify", "add-manager", "ops", "--address", "192.0.2.30",
               "--community-file", str(community)).returncode == 0
    assert cli(engine, "notify", "subscribe", "vm_down_error", "--manager", "ops"
               ).returncode == 0
    bad = cli(engine, "notify", "update-manager", "ops", "--address", "192.0.2.300")
    assert bad.returncode != 0 and "is not an address or name" in bad.stdout + bad.stderr
    no_keys = cli(engine, "notify", "update-manager", "ops", "--v3-user", "overt")
    assert no_keys.returncode != 0 and "passphrase" in no_keys.stdout + no_keys.stderr
    moved = cli(engine, "notify", "update-manager", "ops", "--name", "ops-east", "--port",
                "2162")
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert "SNMP manager ops-east updated (v2c, 192.0.2.30:2162)" in moved.stdout
    [manager] = json.loads(cli(engine, "notify", "managers", "--json").stdout)
    assert (manager["name"], manager["address"], manager["port"], manager["version"]) == (
        "ops-east", "192.0.2.30", "2162", "v2c")
    subs = json.loads(cli(engine, "notify", "subscriptions", "--json").stdout)
    assert [(s["event"], s["address"]) for s in subs] == [("vm_down_error", "ops-east")]

    events = json.loads(cli(engine, "notify", "events", "--json").stdout)
    by_event = {e["event"]: e["codes"] for e in events}
    assert by_event["vm_down_error"] and all(isinstance(c, int) for c in by_event["vm_down_error"])
    assert [e["event"] for e in events] == sorted(e["event"] for e in events)
    assert {"host_failure", "vm_down_error", "system_deactivated_storage_domain"} <= {
        e["event"] for e in events}
    shown = cli(engine, "notify", "events")
    assert shown.returncode == 0 and "host_failure" in shown.stdout

    assert cli(engine, "notify", "unsubscribe", "vm_down_error").returncode == 0
    assert cli(engine, "notify", "remove-manager", "ops-east").returncode == 0
