"""Processes on this machine: starting detached daemons, checking and stopping them."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path


def alive(pid: int) -> bool:
    """True when `pid` runs (a zombie counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def spawn_detached(argv: Sequence[str]) -> int:
    """Start a long-lived process in a session of its own, its stdio on /dev/null."""
    devnull = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    return os.posix_spawnp(argv[0], list(argv), dict(os.environ), setsid=True,
                           file_actions=devnull)


def pids_mentioning(path: Path) -> set[int]:
    """Processes whose command line names a file below `path`."""
    needle = str(path).encode() + b"/"
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (proc / "cmdline").read_bytes():
                found.add(int(proc.name))
    return found


def stop_processes(pids: set[int], grace: float = 5.0) -> set[int]:
    """SIGTERM, then SIGKILL after `grace` seconds; return the pids that still run."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(alive(pid) for pid in pids):
            time.sleep(0.05)
        pids = {pid for pid in pids if alive(pid)}
        if not pids:
            break
    return pids
