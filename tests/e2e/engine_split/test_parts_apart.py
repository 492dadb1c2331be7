"""`overt engine api|worker|monitor` as separate processes against one PostgreSQL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import psycopg
import pytest
from sqlalchemy.engine import make_url

from overt.engine.db.observed_news import APPLICATION
from overt.pki.certs import key_fingerprint, load_key
from tests.conftest import require_root
from tests.support.demo import wait_until
from tests.support.engine import free_port

pytestmark = [pytest.mark.pg, pytest.mark.vm, pytest.mark.slow]
PASSWORD = "split-Password-1"
MIB = 2**20


@dataclass
class Cluster:
    """Engine parts, an agent, their logs."""

    base: Path
    db: str
    api_port: int = field(default_factory=free_port)
    gateway_port: int = field(default_factory=free_port)
    node_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.base / "engine"

    def engine(self, name: str, part: str) -> None:
        argv = [sys.executable, "-m", "overt", "engine", part, "--data-dir", str(self.data_dir),
                "--port", str(self.api_port), "--public-address", "127.0.0.1"]
        self._spawn(name, argv, {"OVERT_DB": self.db, "OVERT_GATEWAY_PORT": str(self.gateway_port),
                                 "OVERT_ADMIN_PASSWORD": PASSWORD,
                                 "OVERT_HOST_GRACE_S": "0"})

    def agent(self) -> None:
        argv = [sys.executable, "-m", "overt", "node", "--listen-address", "127.0.0.1",
                "--port", str(self.node_port), "--advertise-address", "127.0.0.1",
                "--data-dir", str(self.base / "node"), "--storage-dir", str(self.base / "images"),
                "--engine-ca-file", str(self.data_dir / "pki" / "ca.pem"),
                "--heartbeat-interval", "1"]
        self._spawn("agent", argv, {})

    def node_key_fingerprint(self) -> str:
        """The node's key fingerprint, as the administrator reads it off the node."""
        key_file = self.base / "node" / "node.key"
        wait_until(key_file.exists, 60, "the node to make its key")
        return key_fingerprint(load_key(key_file).public_key())

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        with (self.base / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **env})

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.kill()
        process.wait()

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGINT)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in sorted(self.base.glob("*.log")):
            print(f"==== {log.name}\n{log.read_text(errors='replace')[-4000:]}")

    def connect(self) -> sdk.Connection:
        return sdk.Connection(url=f"https://127.0.0.1:{self.api_port}/ovirt-engine/api",
                              username="admin@internal", password=PASSWORD,
                              ca_file=str(self.data_dir / "pki" / "ca.pem"), timeout=60)


@pytest.fixture
def cluster(fresh_postgres_url: str) -> Iterator[Cluster]:
    require_root()
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-split-"))
    base.chmod(0o755)
    parts = Cluster(base, fresh_postgres_url)
    parts.engine("api", "api")
    wait_until(lambda: (parts.data_dir / "pki" / "engine.pem").exists() and
               _answers(parts), 60, "the API to answer")
    parts.engine("worker1", "worker")
    parts.engine("worker2", "worker")
    parts.engine("monitor", "monitor")
    parts.agent()
    yield parts
    parts.stop_all()
    shutil.rmtree(base, ignore_errors=True)


def _answers(parts: Cluster) -> bool:
    try:
        conn = parts.connect()
        conn.test(raise_exception=True)
        conn.close()
        return True
    except Exception:
        return False


def _listeners(url: str) -> int:
    """The engine's connections listening for the monitors' news, as PostgreSQL shows them."""
    with psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(
            hide_password=False)) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                           "AND datname = current_database() AND query LIKE 'LISTEN %%'",
                           (APPLICATION,)).fetchone()
    return int(row[0]) if row else 0


def test_the_parts_apart_run_hosts_and_vms_as_one_engine(cluster: Cluster) -> None:
    conn = cluster.connect()
    system = conn.system_service()
    try:
        host = system.hosts_service().add(types.Host(
            name="node", address="127.0.0.1", port=cluster.node_port,
            cluster=types.Cluster(name="Default"),
            ssh=types.Ssh(fingerprint=cluster.node_key_fingerprint())))
        host_service = system.hosts_service().host_service(host.id)
        wait_until(lambda: host_service.get().status == types.HostStatus.UP, 90, "host up")
        system.storage_domains_service().add(types.StorageDomain(
            name="local", type=types.StorageDomainType.DATA, host=types.Host(name="node"),
            storage=types.HostStorage(type=types.StorageType.LOCALFS,
                                      path=str(cluster.base / "images"))))
        vms = system.vms_service()
        vm = vms.add(types.Vm(name="split-1", cluster=types.Cluster(name="Default"),
                              template=types.Template(name="Blank"), memory=128 * MIB))
        vms.vm_service(vm.id).start()
        wait_until(lambda: vms.vm_service(vm.id).get().status == types.VmStatus.UP, 90,
                   "the VM to run")
        # Both workers hear the monitor's word of changed VMs (LISTEN), so their jobs do
        # not poll the database for what the monitor observed.
        assert _listeners(cluster.db) == 2
        # A worker dies: the other one carries on with the next job.
        cluster.kill("worker1")
        vms.vm_service(vm.id).stop()
        wait_until(lambda: vms.vm_service(vm.id).get().status == types.VmStatus.DOWN, 90,
                   "the VM to stop")
        # The monitor (a process of its own) notices a host that stops answering.
        cluster.kill("agent")
        wait_until(lambda: host_service.get().status == types.HostStatus.NON_RESPONSIVE, 90,
                   "the host to be non responsive")
        cluster.agent()
        wait_until(lambda: host_service.get().status == types.HostStatus.UP, 90, "host up again")
    finally:
        conn.close()
