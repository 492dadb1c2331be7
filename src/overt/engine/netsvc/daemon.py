"""A child daemon (dnsmasq, chronyd) the engine keeps running: started in the foreground,
restarted if it dies, re-read with SIGHUP, stopped with the engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)


class ChildDaemon:
    def __init__(self, name: str, argv: Sequence[str], output: Path, *,
                 pidfile: Path | None = None, restart_delay_s: float = 0.5) -> None:
        """`pidfile`: where the daemon writes its pid once it handles signals."""
        self.name = name
        self.pidfile = pidfile
        self.argv = list(argv)
        self.output = output
        self.restart_delay_s = restart_delay_s
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        running = self.process is not None and self.process.returncode is None
        return self.process.pid if running and self.process is not None else None

    async def start(self) -> None:
        """Start it and watch it: a daemon that exits is started again."""
        self._stopping = False
        await self._spawn()
        self._watch = asyncio.create_task(self._keep_running(), name=f"netsvc {self.name}")

    async def _spawn(self) -> None:
        self.output.parent.mkdir(parents=True, exist_ok=True)
        with self.output.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True)
        self.starts += 1
        log.info("%s started (pid %d)", self.name, self.process.pid)

    async def _keep_running(self) -> None:
        """Restart after a pause that doubles (up to a minute) while it keeps dying young."""
        delay = self.restart_delay_s
        loop = asyncio.get_running_loop()
        while not self._stopping:
            assert self.process is not None
            started = loop.time()
            code = await self.process.wait()
            if self._stopping:
                return
            delay = self.restart_delay_s if loop.time() - started > 30 else min(delay * 2, 60)
            log.warning("%s exited with %s; starting it again in %g s (see %s)", self.name,
                        code, delay, self.output)
            await asyncio.sleep(delay)
            if not self._stopping:
                await self._spawn()

    def forget(self) -> None:
        """Stop watching it and leave it running, as an engine killed outright does (tests)."""
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def ready(self) -> bool:
        """Whether it runs and handles signals (its pid file names it)."""
        if self.pidfile is None or self.pid is None:
            return self.pid is not None
        try:
            return int(self.pidfile.read_text().split()[0]) == self.pid
        except (OSError, ValueError, IndexError):
            return False

    async def reload(self, timeout_s: float = 5.0) -> None:
        """Have it re-read its files (dnsmasq: hosts and DHCP host files). A SIGHUP before
        it handles signals would kill it: until its pid file names it, wait; then restart."""
        for _ in range(int(timeout_s / 0.05)):
            if self.ready():
                break
            await asyncio.sleep(0.05)
        if self.ready() and self.process is not None:
            self.process.send_signal(signal.SIGHUP)
        elif not self._stopping:
            await self.restart()

    async def stop(self, timeout_s: float = 5.0) -> None:
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout_s)
        except TimeoutError:
            process.kill()
            await process.wait()
        log.info("%s stopped", self.name)

    async def restart(self) -> None:
        await self.stop()
        await self.start()


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for its parent does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def reap_stale(pidfile: Path, marker: str, timeout_s: float = 5.0) -> int | None:
    """Stop a daemon an engine that died left behind: the process in `pidfile`, if its
    command line names `marker` (its private configuration file). Returns its pid."""
    try:
        pid = int(pidfile.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError, IndexError):
        return None
    if marker not in cmdline.replace("\0", " "):
        return None
    log.warning("stopping %s (pid %d), left running by an engine that stopped unexpectedly",
                cmdline.split("\0")[0], pid)
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return pid
