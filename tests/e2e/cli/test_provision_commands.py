"""`overt provision`: a profile with a cluster, then without one (`--no-cluster`), as an
administrator runs it; contradictory or unknown options change nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from overt.cli.main import app
from tests.e2e.cli.test_notify_commands import Done
from tests.support.engine import RunningEngine, start_engine
from tests.support.no_nodes import NoNodes

IMAGE = "node-1"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    data_dir = tmp_path_factory.mktemp("engine")
    running = start_engine(data_dir, transport=NoNodes())
    image = data_dir / "node-images" / IMAGE
    image.mkdir(parents=True)
    (image / "vmlinuz").write_bytes(b"kernel")
    (image / "initrd.img").write_bytes(b"initrd")
    yield running
    running.stop()


def cli(engine: RunningEngine, *args: str) -> Done:
    env = {"OVERT_URL": engine.url, "OVERT_USER": "admin@internal",
           "OVERT_PASSWORD": engine.password, "OVERT_CA_FILE": str(engine.ca_file),
           "COLUMNS": "200"}
    result = CliRunner().invoke(app, list(args), env=env)
    return Done(result.exit_code, result.stdout, result.stderr)


def _listed(engine: RunningEngine) -> dict[str, dict[str, Any]]:
    done = cli(engine, "provision", "list", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return {p["name"]: p for p in json.loads(done.stdout)}


def test_a_profile_loses_its_cluster_with_no_cluster(engine: RunningEngine) -> None:
    made = cli(engine, "cluster", "add", "rack1", "--datacenter", "Default")
    assert made.returncode == 0, made.stdout + made.stderr
    added = cli(engine, "provision", "add", "rack1-node3", "--image", IMAGE, "--mac",
                "52:54:00:ab:cd:ef", "--cluster", "rack1")
    assert added.returncode == 0, added.stdout + added.stderr
    assert "Provisioning profile rack1-node3 added" in added.stdout
    table = cli(engine, "provision", "list")
    assert "rack1-node3" in table.stdout and "rack1" in table.stdout.replace("rack1-node3", "")
    before = _listed(engine)["rack1-node3"]
    assert "cluster" in before

    both = cli(engine, "provision", "update", "rack1-node3", "--cluster", "rack1",
               "--no-cluster")
    assert both.returncode == 2
    assert "--cluster or --no-cluster, not both" in both.stdout + both.stderr
    unknown = cli(engine, "provision", "update", "rack1-node3", "--cluster", "nowhere",
                  "--kernel-args", "quiet")
    assert unknown.returncode == 1
    assert "there is no cluster named 'nowhere'" in unknown.stdout + unknown.stderr
    assert _listed(engine)["rack1-node3"] == before

    cleared = cli(engine, "provision", "update", "rack1-node3", "--no-cluster")
    assert cleared.returncode == 0, cleared.stdout + cleared.stderr
    assert "Provisioning profile rack1-node3 updated" in cleared.stdout
    after = _listed(engine)["rack1-node3"]
    assert "cluster" not in after
    assert (after["mac"], after["image"]) == (before["mac"], before["image"])
    row = next(line for line in cli(engine, "provision", "list").stdout.splitlines()
               if "rack1-node3" in line)
    assert "rack1 " not in row.replace("rack1-node3", "")
