"""`overt demo` as a user runs it, in a child process, on ports of its own."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import libvirt
import ovirtsdk4 as sdk

from tests.support.engine import free_port

T = TypeVar("T")


@dataclass
class Demo:
    data_dir: Path
    images_dir: Path
    db: str | None
    bus: str = "direct"  # or a broker administrator's amqp:// URL (fully managed mode)
    password: str = "demo-Password-1"
    port: int = field(default_factory=free_port)
    gateway_port: int = field(default_factory=free_port)
    node_port: int = field(default_factory=free_port)
    log_level: str = "info"
    # How the demo is run: `overt demo` by default; e.g. scripts/demo, behind nsenter.
    command: list[str] = field(default_factory=lambda: [sys.executable, "-m", "overt", "demo"])
    env: dict[str, str] = field(default_factory=dict)  # more environment for this run
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/ovirt-engine/api"

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "pki" / "ca.pem"

    @property
    def log(self) -> Path:
        return self.data_dir / "demo.log"

    @property
    def agent_pidfile(self) -> Path:
        return self.data_dir / "node.pid"

    def launch(self) -> None:
        """Start the demo and return at once (see `start` to wait until it is ready)."""
        argv = [*self.command, "--data-dir", str(self.data_dir),
                "--port", str(self.port), "--gateway-port", str(self.gateway_port),
                "--node-port", str(self.node_port), "--images-dir", str(self.images_dir),
                "--log-level", self.log_level]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "OVERT_ADMIN_PASSWORD": self.password,
                     "OVERT_DEMO_BUS": self.bus, "OVERT_IMAGEIO_PORT": "0",
                     **({"OVERT_DEMO_DB": self.db} if self.db else {}), **self.env})

    def output(self) -> str:
        """What this run of the demo printed (since the last restart mark)."""
        return self.log.read_bytes().split(b"--- restart ---")[-1].decode(errors="replace")

    def mark_restart(self) -> None:
        with self.log.open("ab") as log:
            log.write(b"\n--- restart ---\n")

    def start(self, timeout: float = 240) -> None:
        self.launch()
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while "Overt is ready" not in self.output():
            if self.process.poll() is not None:
                raise RuntimeError(f"overt demo exited:\n{self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"overt demo not ready:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def print_logs(self) -> None:
        """The demo's and its agent's logs, which pytest shows when a test failed."""
        for log in (self.log, self.data_dir / "node.log"):
            if log.exists():
                print(f"==== {log} (last lines)\n{log.read_text(errors='replace')[-6000:]}")

    def kill_engine(self) -> None:
        """kill -9 of the demo process (the engine); its agent keeps running."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.mark_restart()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def connect(self) -> sdk.Connection:
        return sdk.Connection(url=self.url, username="admin@internal", password=self.password,
                              ca_file=str(self.ca_file), timeout=120)

    def destroy_leftover_domains(self, vm_ids: list[str]) -> None:
        conn = libvirt.open("qemu:///system")
        try:
            for vm_id in vm_ids:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.lookupByUUIDString(vm_id).destroy()
        finally:
            conn.close()


def wait_until(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.3
               ) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(every)
