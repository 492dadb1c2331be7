"""`overt node` in a child process, on a free port, with its own data and storage dirs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.engine import free_port


@dataclass
class Agent:
    base: Path
    engine_url: str | None = None
    engine_ca: Path | None = None
    bus: str = "direct"
    port: int = field(default_factory=free_port)
    libvirt_uri: str | None = None  # another libvirtd than this machine's (its own host UUID)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.base / "agent.log"

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "overt", "node", "--listen-address", "127.0.0.1",
                "--port", str(self.port), "--advertise-address", "127.0.0.1",
                "--data-dir", str(self.base / "node"), "--storage-dir", str(self.base / "images"),
                "--heartbeat-interval", "1", "--stats-interval", "2", "--bus", self.bus]
        if self.engine_url:
            argv += ["--engine-url", self.engine_url]
        if self.engine_ca:
            argv += ["--engine-ca-file", str(self.engine_ca)]
        if self.libvirt_uri:
            argv += ["--libvirt-uri", self.libvirt_uri]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL,
                                            env={**os.environ, "OVERT_NODE_ANNOUNCE_INTERVAL_S": "1"})

    def key_fingerprint(self, timeout: float = 30) -> str:
        """The node's key fingerprint (what it logs; what `host add --fingerprint` takes)."""
        from overt.pki.certs import key_fingerprint, load_key
        from tests.support.demo import wait_until

        key_file = self.base / "node" / "node.key"
        wait_until(key_file.exists, timeout, "the node to make its key")
        return key_fingerprint(load_key(key_file).public_key())

    def make_key(self) -> str:
        """Make the node's key before its agent first runs and give its fingerprint (a node
        an administrator prepared, whose fingerprint is known before it answers)."""
        from overt.pki.certs import key_fingerprint, key_pem, new_key, write_private

        key = new_key()
        (self.base / "node").mkdir(parents=True, exist_ok=True)
        write_private(self.base / "node" / "node.key", key_pem(key))
        return key_fingerprint(key.public_key())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log.exists():
            print(f"==== agent log\n{self.log.read_text(errors='replace')[-4000:]}")
