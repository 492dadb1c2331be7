"""Private net-snmp daemons for tests: snmpd and snmptrapd on free loopback UDP ports,
with their own configuration and persistent directory (never the system's)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

WITHIN_S = 15.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require(tool: str) -> str:
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if path is None:
        raise AssertionError(f"{tool} is not installed (scripts/setup installs net-snmp)")
    return path


def _env(workdir: Path) -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[4] / "src")
    return {**os.environ, "MIBS": "", "SNMP_PERSISTENT_DIR": str(workdir / "persist"),
            "SNMPCONFPATH": str(workdir / "client-conf"),
            "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}


def wait_for(what: str, check: Callable[[], bool], within_s: float = WITHIN_S) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {within_s} s")


class Snmpd:
    """snmpd answering `community` on 127.0.0.1:PORT, the Overt subtree from our exporter."""

    def __init__(self, workdir: Path, community: str, state_file: Path, *,
                 config: Callable[[int], str] | None = None,
                 ready: Callable[[Snmpd], bool] | None = None) -> None:
        """`config(port)`: another snmpd.conf (e.g. the product's); `ready`: how to tell
        that it answers (by default a v2c walk with `community`)."""
        self.workdir, self.community = workdir, community
        self.port = free_udp_port()
        (workdir / "client-conf").mkdir(parents=True, exist_ok=True)
        conf = workdir / "snmpd.conf"
        conf.write_text(config(self.port) if config is not None else (
            f"agentAddress udp:127.0.0.1:{self.port}\n"
            f"rocommunity {community} 127.0.0.1\n"
            f"pass_persist .1.3.6.1.4.1.99999 {sys.executable} -m overt.node.snmp "
            f"--state-file {state_file}\n"), encoding="utf-8")
        conf.chmod(0o600)
        self.log = workdir / "snmpd.log"
        self.proc = subprocess.Popen(
            [require("snmpd"), "-f", "-C", "-c", str(conf), "-Lf", str(self.log),
             "-p", str(workdir / "snmpd.pid")], env=_env(workdir),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for("snmpd answering", (lambda: ready(self)) if ready is not None else
                 (lambda: self.walk(community, ".1.3.6.1.2.1.1.1")[0] == 0))

    def walk(self, community: str, oid: str = ".1.3.6.1.4.1.99999") -> tuple[int, str]:
        if self.proc.poll() is not None:
            raise AssertionError(f"snmpd exited: {self.log.read_text(errors='replace')[-2000:]}")
        done = subprocess.run(
            [require("snmpwalk"), "-v2c", "-c", community, "-On", "-t", "1", "-r", "0",
             f"udp:127.0.0.1:{self.port}", oid], env=_env(self.workdir),
            capture_output=True, text=True, check=False, timeout=30)
        return done.returncode, done.stdout

    def walk_v3(self, user: str, auth: str, priv: str, oid: str = ".1.3.6.1.4.1.99999"
                ) -> tuple[int, str]:
        """An SNMPv3 authPriv walk (SHA, AES), as a monitoring system does it."""
        if self.proc.poll() is not None:
            raise AssertionError(f"snmpd exited: {self.log.read_text(errors='replace')[-2000:]}")
        done = subprocess.run(
            [require("snmpwalk"), "-v3", "-l", "authPriv", "-u", user, "-a", "SHA", "-A", auth,
             "-x", "AES", "-X", priv, "-On", "-t", "1", "-r", "0",
             f"udp:127.0.0.1:{self.port}", oid], env=_env(self.workdir),
            capture_output=True, text=True, check=False, timeout=30)
        return done.returncode, done.stdout + done.stderr

    def values(self) -> dict[str, str]:
        """The subtree as {OID: 'TYPE: value'}."""
        code, out = self.walk(self.community)
        assert code == 0, out
        return dict(line.split(" = ", 1) for line in out.splitlines() if " = " in line)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=15)


@dataclass(frozen=True)
class UsmUser:
    """An SNMPv3 user at authPriv (SHA, AES) whose traps come from `engine_id`."""

    name: str
    auth: str
    priv: str
    engine_id: str


class Snmptrapd:
    """snmptrapd on 127.0.0.1:PORT logging the traps of `community` (only) to a file, or
    those of an SNMPv3 user at authPriv."""

    def __init__(self, workdir: Path, community: str = "", *, user: UsmUser | None = None
                 ) -> None:
        self.port = free_udp_port()
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "client-conf").mkdir(exist_ok=True)
        conf = workdir / "snmptrapd.conf"
        lines = [f"authCommunity log {community}"] if community else []
        if user is not None:
            lines += [f"createUser -e {user.engine_id} {user.name} SHA {user.auth} AES "
                      f"{user.priv}", f"authUser log {user.name} priv"]
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        conf.chmod(0o600)
        self.log = workdir / "snmptrapd.log"
        self.proc = subprocess.Popen(
            [require("snmptrapd"), "-f", "-C", "-c", str(conf), "-Lf", str(self.log), "-On",
             f"udp:127.0.0.1:{self.port}"], env=_env(workdir),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for("snmptrapd started", lambda: "NET-SNMP version" in self.text())

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def text(self) -> str:
        if self.proc.poll() is not None:
            raise AssertionError("snmptrapd exited")
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def traps(self) -> list[str]:
        """One line per trap received (its varbinds)."""
        return [line for line in self.text().splitlines() if ".1.3.6.1.6.3.1.1.4.1.0" in line]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=15)
