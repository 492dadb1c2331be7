"""`overt vm` and `overt host` against a running engine, as an administrator uses them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import ovirtsdk4 as sdk
import pytest

from tests.support.engine import RunningEngine, start_engine
from tests.support.no_nodes import NoNodes

# Each command is a new Python process: seconds each, so out of the fast lane.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    running = start_engine(tmp_path_factory.mktemp("engine"), transport=NoNodes())
    yield running
    running.stop()


def cli(engine: RunningEngine, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OVERT_URL": engine.url, "OVERT_PASSWORD": engine.password,
           "OVERT_CA_FILE": str(engine.ca_file)}
    return subprocess.run([sys.executable, "-m", "overt", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def test_create_list_and_remove(engine: RunningEngine) -> None:
    created = cli(engine, "vm", "create", "cli-1", "--memory", "256M", "--cpus", "2", "--json")
    assert created.returncode == 0, created.stderr
    vm = json.loads(created.stdout)
    assert vm["name"] == "cli-1" and vm["memory"] == 256 * 2**20
    listed = cli(engine, "vm", "list", "--json")
    assert [v["name"] for v in json.loads(listed.stdout)] == ["cli-1"]
    table = cli(engine, "vm", "list")
    assert "cli-1" in table.stdout and "down" in table.stdout and "256 MiB" in table.stdout
    removed = cli(engine, "vm", "remove", "cli-1")
    assert removed.returncode == 0, removed.stderr
    assert json.loads(cli(engine, "vm", "list", "--json").stdout) == []


def test_failures_are_explained_without_a_traceback(engine: RunningEngine) -> None:
    assert cli(engine, "vm", "create", "cli-2", "--memory", "128M").returncode == 0
    started = cli(engine, "vm", "start", "cli-2")
    assert started.returncode == 1
    assert "There is no host that satisfies current scheduling constraints" in started.stderr
    assert "Traceback" not in started.stderr
    missing = cli(engine, "vm", "start", "no-such-vm")
    assert missing.returncode == 1
    assert "there is no vm named 'no-such-vm'" in missing.stderr
    twice = cli(engine, "vm", "create", "cli-2")
    assert twice.returncode == 1 and "already in use" in twice.stderr


def test_host_list_and_bad_credentials(engine: RunningEngine) -> None:
    hosts = cli(engine, "host", "list", "--json")
    assert hosts.returncode == 0 and json.loads(hosts.stdout) == []
    env = {**os.environ, "OVERT_URL": engine.url, "OVERT_PASSWORD": "wrong",
           "OVERT_CA_FILE": str(engine.ca_file)}
    denied = subprocess.run([sys.executable, "-m", "overt", "host", "list"], capture_output=True,
                            text=True, env=env, timeout=60, check=False)
    assert denied.returncode == 1 and "login failed" in denied.stderr


def test_iso_add_refuses_a_file_that_is_not_an_iso(engine: RunningEngine,
                                                   tmp_path: Path) -> None:
    not_iso = tmp_path / "disk.qcow2"
    not_iso.write_bytes(b"QFI\xfb" + b"\0" * 40000)
    refused = cli(engine, "iso", "add", str(not_iso), "--domain", "local")
    assert refused.returncode != 0
    assert "is not an ISO 9660 image" in refused.stderr + refused.stdout
    conn = sdk.Connection(url=engine.url, username="admin@internal", password=engine.password,
                          ca_file=str(engine.ca_file))
    try:
        assert conn.system_service().disks_service().list() == []
    finally:
        conn.close()
