"""A child daemon (dnsmasq, chronyd) the engine keeps running: started in the foreground,
restarted if it dies, re-read with SIGHUP, stopped with the engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)


class ChildDaemon:
    def __init__(self, name: str, argv: Sequence[str], output: Path, *,
                 restart_delay_s: float = 0.5) -> None:
        self.name = name
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

    def reload(self) -> None:
        """Have it re-read its files (dnsmasq: hosts and DHCP host files)."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGHUP)

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
