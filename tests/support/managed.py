"""Fully managed mode for tests: engine parts and simulated fleets as processes of their own,
on one database and one broker, with their logs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.tables import Host
from tests.support.demo import wait_until
from tests.support.engine import free_port

PASSWORD = "managed-Password-1"


@dataclass
class ManagedSite:
    """Engine processes (`engine`) and fleets of simulated nodes (`fleet`) under `base`."""

    base: Path
    db: str
    bus: str  # the engine's broker account
    admin_url: str  # the broker administrator (api processes only)
    management_port: int | None = None  # of a broker whose management API is not on 15672
    api_port: int = field(default_factory=free_port)
    gateway_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.base / "engine"

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "pki" / "ca.pem"

    def engine(self, name: str, part: str | None = None, **env: str) -> None:
        """`overt engine [PART]`; the api part (or all parts) gets the administrator URL."""
        argv = [sys.executable, "-m", "overt", "engine", *([part] if part else []),
                "--data-dir", str(self.data_dir), "--port", str(self.api_port),
                "--public-address", "127.0.0.1"]
        environment = {"OVERT_DB": self.db, "OVERT_BUS": self.bus,
                       "OVERT_GATEWAY_PORT": str(self.gateway_port),
                       "OVERT_ADMIN_PASSWORD": PASSWORD, "OVERT_HEARTBEAT_TIMEOUT_S": "10",
                       "OVERT_HOST_GRACE_S": "0",
                       "OVERT_MONITOR_REPORT_INTERVAL_S": "2", **env}
        if part in (None, "api"):
            environment["OVERT_BROKER_ADMIN_URL"] = self.admin_url
            if self.management_port is not None:
                environment["OVERT_BROKER_MANAGEMENT_PORT"] = str(self.management_port)
        self._spawn(name, argv, environment)

    def fleet(self, name: str, count: int, *, first: int = 0, seed: str = "sim",
              **options: Any) -> None:
        """`overt simulate nodes`: `count` simulated nodes announcing to this engine."""
        argv = [sys.executable, "-m", "overt", "simulate", "nodes",
                "--engine-url", f"https://127.0.0.1:{self.gateway_port}",
                "--data-dir", str(self.base / "fleet"), "--count", str(count),
                "--first", str(first), "--seed", seed, "--engine-ca-file", str(self.ca_file),
                "--status-file", str(self.status_file(name)), "--log-level", "INFO"]
        for option, value in options.items():
            argv += [f"--{option.replace('_', '-')}", str(value)]
        self._spawn(name, argv, {})

    def status_file(self, name: str) -> Path:
        return self.base / f"{name}.status.json"

    def fleet_status(self, name: str) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = json.loads(self.status_file(name).read_text())
        return result

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        with self.log(name).open("ab") as log:
            self.processes[name] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **env})

    def log(self, name: str) -> Path:
        return self.base / f"{name}.log"

    def text(self, name: str) -> str:
        return self.log(name).read_text(errors="replace")

    def kill(self, name: str) -> None:
        """kill -9, as a crash."""
        process = self.processes.pop(name)
        process.kill()
        process.wait()

    def stop(self, name: str, timeout: float = 60) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name, timeout=30)

    def print_logs(self) -> None:
        for log in sorted(self.base.glob("*.log")):
            print(f"==== {log.name}\n{log.read_text(errors='replace')[-5000:]}")

    def connect(self) -> sdk.Connection:
        return sdk.Connection(url=f"https://127.0.0.1:{self.api_port}/ovirt-engine/api",
                              username="admin@internal", password=PASSWORD,
                              ca_file=str(self.ca_file), timeout=60)

    def wait_for_api(self, timeout: float = 60) -> None:
        def answers() -> bool:
            try:
                conn = self.connect()
                conn.test(raise_exception=True)
                conn.close()
                return True
            except Exception:
                return False
        wait_until(lambda: self.ca_file.exists() and answers(), timeout, "the API to answer")

    def approve_all(self, conn: sdk.Connection, count: int, timeout: float = 90) -> None:
        """Approve the nodes that announced themselves, until `count` hosts are up."""
        hosts = conn.system_service().hosts_service()

        def all_up() -> bool:
            listed = hosts.list()
            for host in listed:
                if host.status == types.HostStatus.PENDING_APPROVAL:
                    hosts.host_service(host.id).approve()
            return sum(h.status == types.HostStatus.UP for h in listed) == count
        wait_until(all_up, timeout, f"{count} hosts to be up", every=0.5)


def event_positions(db_url: str) -> dict[str, tuple[str | None, int]]:
    """Each enrolled host's event position in the database: (boot id, last seq applied)."""
    return {host: (boot, seq) for host, (boot, seq, _resync) in _positions(db_url).items()}


def resync_pending(db_url: str) -> bool:
    """Whether the monitor still has to resynchronise a host."""
    return any(resync for _boot, _seq, resync in _positions(db_url).values())


def _positions(db_url: str) -> dict[str, tuple[str | None, int, bool]]:
    async def read() -> dict[str, tuple[str | None, int, bool]]:
        db = Database(db_url)
        try:
            async with db.transaction() as session:
                rows = (await session.execute(
                    select(Host.host_uuid, Host.boot_id, Host.last_seq, Host.needs_resync)
                    .where(Host.host_uuid.is_not(None)))).all()
        finally:
            await db.dispose()
        return {str(host): (str(boot) if boot else None, seq, resync)
                for host, boot, seq, resync in rows}
    return asyncio.run(read())
