"""A lab node's power loss to its highly available VM `up` on the other node.

Runs the lab scenario of `tests/e2e/lab/test_ha_restart.py` (real QEMU guests, the real
`fence_ipmilan` against node1's virtual BMC, the engine fully managed over RabbitMQ): node1
is powered off through its BMC, outside Overt; the time is taken from the power off until
the engine shows the VM up on node2 and node2's libvirtd runs it. The engine misses a node
after 5 s without heartbeats (the nodes send one a second) and the cluster's grace is 2 s;
with the defaults (30 s, 60 s + 0.5 s per VM) add 85 s.
Needs root and the lab (`OVERT_TEST_LAB_PREFIX`, `OVERT_TEST_LAB_BLOCK` as for the tests).
Usage: .venv/bin/python -m bench.ha_restart [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TEST = "tests/e2e/lab/test_ha_restart.py"


def run_once() -> float:
    with tempfile.TemporaryDirectory(prefix="overt-bench-ha-") as scratch:
        figures = Path(scratch) / "figures.json"
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-m", "lab", TEST],
            env={**os.environ, "OVERT_HA_TIMINGS_FILE": str(figures)}, check=False,
            capture_output=True, text=True)
        if done.returncode != 0 or not figures.exists():
            sys.exit(f"the lab scenario failed:\n{done.stdout[-5000:]}\n{done.stderr[-2000:]}")
        return float(json.loads(figures.read_text())["power_loss_to_ha_vm_up_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    times = [run_once() for _ in range(args.runs)]
    print(f"power loss of a lab node -> its HA VM up on the other node, {args.runs} run(s): "
          f"median {statistics.median(times):.1f} s, min {min(times):.1f} s, "
          f"max {max(times):.1f} s")


if __name__ == "__main__":
    main()
