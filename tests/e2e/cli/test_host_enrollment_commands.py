"""`overt host add` and `overt host approve`: the one-time token and the key fingerprint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from overt.pki.certs import key_fingerprint
from tests.security.conftest import FakeNode
from tests.support.engine import RunningEngine, start_engine

pytestmark = pytest.mark.slow  # the CLI in child processes against an engine


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    running = start_engine(Path(tmp_path_factory.mktemp("engine")))
    yield running
    running.stop()


def cli(engine: RunningEngine, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OVERT_URL": engine.url, "OVERT_PASSWORD": engine.password,
           "OVERT_CA_FILE": str(engine.ca_file), "COLUMNS": "300"}
    return subprocess.run([sys.executable, "-m", "overt", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def test_host_add_prints_a_one_time_token(engine: RunningEngine) -> None:
    added = cli(engine, "host", "add", "far", "127.0.0.1", "--port", "9")
    assert added.returncode == 0, added.stderr
    assert "overt node --enroll-token " in added.stdout
    token = added.stdout.split("--enroll-token ")[1].split()[0]
    assert len(token) >= 24
    listed = cli(engine, "host", "list", "--json")
    assert token not in listed.stdout  # shown once, never listed


def test_host_approve_needs_the_key_the_node_shows(engine: RunningEngine) -> None:
    node = FakeNode()
    node.announce(engine)
    [host] = [h for h in json.loads(cli(engine, "host", "list", "--json").stdout)
              if h["status"] == "pending_approval"]
    shown = key_fingerprint(node.key.public_key())
    assert host["ssh"]["fingerprint"] == shown
    wrong = cli(engine, "host", "approve", host["id"], "--fingerprint",
                key_fingerprint(FakeNode().key.public_key()))
    assert wrong.returncode == 1 and "compare with the node's log" in wrong.stderr
    right = cli(engine, "host", "approve", host["id"], "--fingerprint", shown.lower())
    assert right.returncode == 0, right.stderr
    assert node.announce(engine).certificate_pem is not None


def test_provisioning_profiles_from_the_command_line(engine: RunningEngine) -> None:
    image = engine.runtime.settings.data_dir / "node-images" / "node-2026"
    image.mkdir(parents=True)
    for name in ("vmlinuz", "initrd.img"):
        (image / name).write_bytes(b"boot file")
    unknown = cli(engine, "provision", "add", "rack1-node3", "--image", "node-1999",
                  "--mac", "52:54:00:AB:CD:EF")
    assert unknown.returncode == 1 and "is not a node image" in unknown.stderr
    assert "node-2026" in unknown.stderr  # what it has instead
    bad_mac = cli(engine, "provision", "add", "rack1-node3", "--image", "node-2026",
                  "--mac", "52:54:00")
    assert bad_mac.returncode == 1 and "is not a MAC address" in bad_mac.stderr
    added = cli(engine, "provision", "add", "rack1-node3", "--image", "node-2026", "--mac",
                "52:54:00:AB:CD:EF", "--kernel-args", "intel_iommu=on", "--cluster", "Default")
    assert added.returncode == 0, added.stderr
    updated = cli(engine, "provision", "update", "rack1-node3", "--kernel-args", "quiet")
    assert updated.returncode == 0, updated.stderr
    [profile] = json.loads(cli(engine, "provision", "list", "--json").stdout)
    assert (profile["name"], profile["mac"]["address"], profile["image"],
            profile["kernel_args"]) == ("rack1-node3", "52:54:00:ab:cd:ef", "node-2026", "quiet")
    assert profile["cluster"]["id"]
    renamed = cli(engine, "provision", "update", "rack1-node3", "--name", "rack1-any",
                  "--default")
    assert renamed.returncode == 0, renamed.stderr
    [profile] = json.loads(cli(engine, "provision", "list", "--json").stdout)
    assert (profile["name"], profile.get("mac"), profile["default"]) == (
        "rack1-any", None, True)
    both = cli(engine, "provision", "update", "rack1-any", "--default", "--mac",
               "52:54:00:AB:CD:EF")
    assert both.returncode != 0 and "not both" in both.stdout + both.stderr
    removed = cli(engine, "provision", "remove", "rack1-any")
    assert removed.returncode == 0, removed.stderr
    assert json.loads(cli(engine, "provision", "list", "--json").stdout) == []
