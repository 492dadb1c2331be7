"""Running the `overt` command as a user would, from tests."""

from __future__ import annotations

import subprocess
import sys


def overt(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `overt ARGS...` in a child process; never raises on a non-zero exit."""
    return subprocess.run([sys.executable, "-m", "overt", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)
