"""`overt node`'s SNMP options as an operator meets them: bad ones stop it with a message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _node(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OVERT_SNMP_COMMUNITY"}
    return subprocess.run(
        [sys.executable, "-m", "overt", "node", "--data-dir", str(tmp_path / "data"),
         "--storage-dir", str(tmp_path / "images"), "--listen-address", "127.0.0.1", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False)


def test_a_bad_trap_target_is_refused_before_anything_starts(tmp_path: Path) -> None:
    done = _node(tmp_path, "--snmp-trap-target", "nms example:99999")
    assert done.returncode == 2
    assert "snmp_trap_target" in done.stderr and "trap target" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()


def test_traps_without_a_community_stop_the_node_with_a_message(tmp_path: Path) -> None:
    done = _node(tmp_path, "--snmp-trap-target", "127.0.0.1:1162")
    assert done.returncode == 1, done.stderr
    assert "no SNMP community" in done.stderr and "Traceback" not in done.stderr


def test_the_community_file_must_be_readable(tmp_path: Path) -> None:
    done = _node(tmp_path, "--snmp-trap-target", "127.0.0.1:1162",
                 "--snmp-community-file", str(tmp_path / "absent"))
    assert done.returncode == 1
    assert "cannot read the SNMP community file" in done.stderr
    assert "Traceback" not in done.stderr
