"""The all-in-one's agent for this machine: a child process the demo starts, waits for,
and always stops; or the one a previous run of the same data directory left behind.

The agent's pid is kept in `<data dir>/node.pid`. A pid there is the demo's own agent
only when that process still runs `overt node` with this data directory's node
directory on its command line (a recycled pid is never taken for it).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from overt.system.processes import alive, stop_processes
from overt.system.waiting import tcp_port_answers

# How long the demo waits for its agent's port: a first start on a fresh machine waits
# for libvirt to probe QEMU and for the agent's own KVM probe (seconds, a minute at worst).
ANSWER_TIMEOUT_S = 180.0
PROGRESS_EVERY_S = 15.0


class AgentError(RuntimeError):
    """The agent did not start or answer; the message says where to look."""


@dataclass
class AgentOptions:
    data_dir: Path  # the engine's data directory; the agent's own is data_dir/node
    images_dir: Path
    port: int
    ca_file: Path
    managed: bool


class LocalAgent:
    def __init__(self, options: AgentOptions, say: Callable[[str], None]) -> None:
        self.options = options
        self.say = say
        self.process: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None

    @property
    def node_dir(self) -> Path:
        return self.options.data_dir / "node"

    @property
    def pidfile(self) -> Path:
        return self.options.data_dir / "node.pid"

    @property
    def log_file(self) -> Path:
        return self.options.data_dir / "node.log"

    def leftover(self) -> int | None:
        """The agent of this data directory that a previous run left running, if any."""
        try:
            pid = int(self.pidfile.read_text())
        except (OSError, ValueError):
            return None
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if not alive(pid) or b"node" not in argv or str(self.node_dir).encode() not in argv:
            return None
        return pid

    def _leftover_port(self, pid: int) -> int | None:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        try:
            return int(argv[argv.index(b"--port") + 1])
        except (ValueError, IndexError):
            return None

    def start(self) -> None:
        """Reuse the leftover agent of this data directory, or start one."""
        running = self.leftover()
        if running is not None and self._leftover_port(running) == self.options.port:
            self.say(f"the agent of this machine is still running (pid {running}); using it")
            self.pid = running
            return
        if running is not None:
            self.say(f"stopping the agent a previous run left (pid {running}, another port)")
            stop_processes({running}, grace=20)
        self.node_dir.mkdir(parents=True, exist_ok=True)
        self.options.images_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "overt", "node", "--listen-address", "127.0.0.1",
                "--port", str(self.options.port), "--advertise-address", "127.0.0.1",
                "--data-dir", str(self.node_dir), "--storage-dir", str(self.options.images_dir),
                "--engine-ca-file", str(self.options.ca_file)]
        if self.options.managed:
            argv += ["--bus", "amqp"]
        self.say(f"starting the agent of this machine (log: {self.log_file})")
        with self.log_file.open("ab") as log:
            # A session of its own: a Ctrl-C at the terminal reaches the demo only, which
            # then stops the agent itself (VMs belong to libvirt and keep running).
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.pid = self.process.pid
        self.pidfile.write_text(str(self.pid))

    async def wait_until_it_answers(self, timeout_s: float = ANSWER_TIMEOUT_S) -> None:
        """Wait for the agent's port, saying what is awaited; fail if the agent dies."""
        where = f"127.0.0.1:{self.options.port}"
        if await asyncio.to_thread(tcp_port_answers, "127.0.0.1", self.options.port):
            return
        self.say(f"waiting for the agent to answer on {where} (its first start on a machine "
                 f"waits for libvirt to probe QEMU; up to {timeout_s:.0f} s)")
        started = time.monotonic()
        next_note = started + PROGRESS_EVERY_S
        while not await asyncio.to_thread(tcp_port_answers, "127.0.0.1", self.options.port):
            now = time.monotonic()
            if not self.running():
                raise AgentError(f"the agent of this machine stopped before answering on "
                                 f"{where}; see {self.log_file}")
            if now - started > timeout_s:
                raise AgentError(f"the agent of this machine did not answer on {where} within "
                                 f"{timeout_s:.0f} s; see {self.log_file}")
            if now >= next_note:
                self.say(f"still waiting for the agent ({now - started:.0f} s)")
                next_note = now + PROGRESS_EVERY_S
            await asyncio.sleep(0.3)
        self.say(f"the agent answers on {where} (after {time.monotonic() - started:.1f} s)")

    def running(self) -> bool:
        return self.pid is not None and alive(self.pid)

    def stop(self) -> None:
        """Stop the agent (SIGTERM, then SIGKILL); its VMs keep running."""
        if self.pid is None:
            return
        stop_processes({self.pid}, grace=20)
        if self.process is not None:
            self.process.wait()
        self.pidfile.unlink(missing_ok=True)
        self.pid, self.process = None, None
