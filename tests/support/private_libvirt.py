"""A libvirtd of a test's own, in a private mount namespace (the lab's technique, without
a network namespace): private /etc/libvirt (with its own host UUID), /var/lib/libvirt,
/var/log/libvirt, /var/cache/libvirt and /run, so the shared libvirtd of this machine is
never touched. With `fresh_cache` its /var/cache/libvirt is empty, as on a machine whose
libvirtd has never run (the first call then probes QEMU).

Programs run "on" it through `enter(argv)`; from outside, `uri` reaches its socket.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from overt.lab.node_host import copy_directories, copy_libvirt_config
from overt.system.processes import alive, command_name, spawn_detached, stop_processes
from overt.system.waiting import unix_socket_answers, wait_until

BINDS = {"etc-libvirt": "/etc/libvirt", "var-lib-libvirt": "/var/lib/libvirt",
         "log-libvirt": "/var/log/libvirt", "cache-libvirt": "/var/cache/libvirt",
         "run": "/run"}


@dataclass
class PrivateLibvirt:
    base: Path
    fresh_cache: bool = True
    host_uuid: uuid.UUID = field(default_factory=uuid.uuid4)
    anchor: int | None = None

    @property
    def socket(self) -> Path:
        return self.base / "run" / "libvirt" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket}"

    @property
    def capabilities_cache(self) -> Path:
        return self.base / "cache-libvirt" / "qemu" / "capabilities"

    def enter(self, argv: Sequence[str]) -> list[str]:
        assert self.anchor is not None
        return ["nsenter", "-t", str(self.anchor), "--mount", "--", *argv]

    def make_namespace(self) -> None:
        """The private directories and the mount namespace that shows them; no daemon."""
        self._prepare_dirs()
        pid = spawn_detached(["unshare", "--mount", "--propagation", "private",
                              "sleep", "infinity"])
        wait_until(lambda: command_name(pid) == "sleep" or not alive(pid), timeout=10,
                   what="a private mount namespace")
        self.anchor = pid
        for name, target in BINDS.items():
            subprocess.run(self.enter(["mount", "--bind", str(self.base / name), target]),
                           check=True)

    def start_daemons(self) -> None:
        """virtlogd and libvirtd, as `overt demo` starts them on a fresh machine."""
        subprocess.run(self.enter(["virtlogd", "-d"]), check=True)
        subprocess.run(self.enter(["libvirtd", "-d"]), check=True)
        wait_until(lambda: unix_socket_answers(str(self.socket)), timeout=30,
                   what="the private libvirtd answering")

    def _prepare_dirs(self) -> None:
        copy_libvirt_config(self.base / "etc-libvirt", self.host_uuid)
        copy_directories(Path("/var/lib/libvirt"), self.base / "var-lib-libvirt")
        if self.fresh_cache:
            copy_directories(Path("/var/cache/libvirt"), self.base / "cache-libvirt")
        else:
            shutil.copytree("/var/cache/libvirt", self.base / "cache-libvirt", symlinks=True)
        for name in BINDS:
            (self.base / name).mkdir(parents=True, exist_ok=True)
        (self.base / "run").chmod(0o755)

    def stop(self) -> None:
        """Stop the QEMU guests and the daemons started in the namespace, then the namespace."""
        pids = set()
        for pidfile in (self.base / "run").glob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                pids.add(int(pidfile.read_text().strip()))
        for pidfile in (self.base / "run" / "libvirt" / "qemu").glob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                pids.add(int(pidfile.read_text().strip()))
        stop_processes({p for p in pids if alive(p)}, grace=10)
        if self.anchor is not None and alive(self.anchor):
            os.kill(self.anchor, signal.SIGKILL)
        self.anchor = None
