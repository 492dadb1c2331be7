"""Building and removing labs leaves nothing behind, also after failures and crashes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from overt.lab import netns
from overt.lab.lab import Lab
from overt.lab.storage_host import StorageServer
from overt.lab.topology import LabSpec, Topology
from overt.system.processes import pids_mentioning
from tests.support.cli import overt

pytestmark = pytest.mark.lab

SPEC = LabSpec(nodes=1, prefix="ovlc", address_block="10.212.0.0/16")
ARGS = ["--prefix", SPEC.prefix, "--address-block", SPEC.address_block]


def leftovers(spec: LabSpec = SPEC) -> list[str]:
    """Everything of the lab still on the machine, described."""
    state_dir = Topology(spec).state_dir
    found = [f"namespace {ns}" for ns in netns.namespaces() if ns.startswith(f"{spec.prefix}-")]
    found += [f"link {name}" for name in netns.links() if name.startswith(spec.prefix)]
    found += [f"process {pid}" for pid in pids_mentioning(state_dir)]
    for mountinfo in Path("/proc").glob("[0-9]*/mountinfo"):
        try:
            if str(state_dir) in mountinfo.read_text():
                found.append(f"mount seen by {mountinfo.parent.name}")
        except OSError:
            continue
    if state_dir.exists():
        found.append(f"directory {state_dir}")
    return found


@pytest.fixture
def clean() -> None:
    Lab(Topology(SPEC)).down()
    assert leftovers() == []


@pytest.mark.usefixtures("clean")
def test_down_removes_everything_up_made() -> None:
    built = overt("lab", "up", "--nodes", "1", *ARGS)
    assert built.returncode == 0, built.stderr
    assert len(leftovers()) > 5
    removed = overt("lab", "down", "--prefix", SPEC.prefix)
    assert removed.returncode == 0, removed.stderr
    assert leftovers() == []


@pytest.mark.usefixtures("clean")
def test_down_cleans_up_after_a_lab_whose_state_was_lost() -> None:
    Lab(Topology(SPEC)).up()
    state_dir = Topology(SPEC).state_dir
    (state_dir / "lab.json").unlink()
    libvirtd_pid = int((state_dir / "node1" / "pids" / "libvirtd.pid").read_text())
    subprocess.run(["kill", "-9", str(libvirtd_pid)], check=True)
    removed = overt("lab", "down", "--prefix", SPEC.prefix)
    assert removed.returncode == 0, removed.stderr
    assert leftovers() == []


@pytest.mark.usefixtures("clean")
def test_down_cleans_up_after_up_was_killed_midway() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "overt", "lab", "up", "--nodes", "1", *ARGS],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not any(ns.startswith(f"{SPEC.prefix}-node1") for ns in netns.namespaces()):
            assert time.monotonic() < deadline, "lab up never got to the nodes"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert leftovers() != []
    assert overt("lab", "down", "--prefix", SPEC.prefix).returncode == 0
    assert leftovers() == []


@pytest.mark.usefixtures("clean")
def test_a_failed_build_leaves_no_half_built_lab(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: StorageServer) -> None:
        raise RuntimeError("nfs-ganesha would not start")

    monkeypatch.setattr(StorageServer, "ensure_running", broken)
    with pytest.raises(RuntimeError, match="nfs-ganesha"):
        Lab(Topology(SPEC)).up()
    assert leftovers() == []


@pytest.mark.usefixtures("clean")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nodes", "0"], "--nodes must be between 1 and 32, not 0"),
        (["--nodes", "1", "--address-block", "10.0.0.0/30"], "too small"),
        (["--nodes", "1", "--prefix", "NOPE"], "lab prefix"),
    ],
)
def test_bad_input_is_refused_clearly_and_builds_nothing(args: list[str], message: str) -> None:
    result = overt("lab", "up", "--prefix", SPEC.prefix, *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert leftovers() == []


@pytest.mark.usefixtures("clean")
def test_addresses_in_use_on_this_machine_are_refused() -> None:
    dummy_bridge = "ovlcclash"
    netns.ensure_bridge(dummy_bridge)
    try:
        netns.ip("addr", "add", "10.212.0.77/24", "dev", dummy_bridge)
        result = overt("lab", "up", "--nodes", "1", *ARGS)
        assert result.returncode == 1
        assert re.search(r"overlap this machine's routes \(10\.212\.0\.0/24", result.stderr)
    finally:
        netns.delete_links([dummy_bridge])
    assert leftovers() == []


def test_status_of_a_lab_that_is_not_up_says_how_to_start_one() -> None:
    result = overt("lab", "status", "--prefix", "nolab")
    assert result.returncode == 1
    assert "no lab 'nolab' is up; start one with `overt lab up`" in result.stderr


def test_status_json_names_the_engine_address_and_node_uris(clean: None) -> None:
    assert overt("lab", "up", "--nodes", "1", *ARGS).returncode == 0
    try:
        status = json.loads(overt("lab", "status", "--json", "--prefix", SPEC.prefix).stdout)
        assert status["engine_address"] == "10.212.0.1"
        node = status["hosts"][1]
        assert node["libvirt_uri"].startswith("qemu+unix:///system?socket=")
    finally:
        Lab(Topology(SPEC)).down()
