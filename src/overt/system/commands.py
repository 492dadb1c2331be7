"""Running system tools with errors an administrator can act on."""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)


class CommandFailed(RuntimeError):
    """A system tool exited non-zero; carries what it printed on stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        detail = self.stderr.splitlines()[-1] if self.stderr else "no error output"
        super().__init__(f"`{shlex.join(self.argv)}` failed (exit {returncode}): {detail}")


class ToolMissing(RuntimeError):
    """A system tool is not installed."""


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 120,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `argv`, capture its output as text, and raise CommandFailed on failure."""
    log.debug("run %s", shlex.join(argv))
    data = input.decode() if isinstance(input, bytes) else input
    try:
        proc = subprocess.run(
            list(argv),
            input=data,
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else None,
            timeout=timeout,
            cwd=cwd,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ToolMissing(
            f"{argv[0]} is not installed; run scripts/setup as root to install Overt's packages"
        ) from exc
    if check and proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode, proc.stderr)
    return proc


def succeeds(argv: Sequence[str], *, timeout: float | None = 30) -> bool:
    """True when `argv` exits 0 (for probes; output is discarded)."""
    try:
        return run(argv, check=False, timeout=timeout).returncode == 0
    except (ToolMissing, subprocess.TimeoutExpired):
        return False
