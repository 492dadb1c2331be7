"""An engine deployed for high availability, in a lab on this machine (docs/engine-ha.md).

Every machine of the deployment is a network namespace of its own on one bridge:
`db1`-`db3` (an etcd member and a PostgreSQL under Patroni each), `mq1`-`mq3` (a
RabbitMQ cluster), `lb` (HAProxy: the API, the nodes' gateway, the database's primary
and the broker's management API), and two of each engine part (`api1`, `api2`,
`worker1`, ...). Everything comes from Debian packages; killing a machine
(`kill_machine`) kills every process in its namespace, as a power cut would.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import ovirtsdk4 as sdk

from overt.bus.amqp.admin import BrokerAdmin
from overt.engine.db import migrate
from overt.lab import netns
from overt.system.commands import run
from tests.support.demo import wait_until

PASSWORD = "ha-Password-1"
API_PORT = 8443
GATEWAY_PORT = 54321
PG_PORT = 5432
PATRONI_PORT = 8008
AMQP_PORT = 5672
MANAGEMENT_PORT = 15672
VHOST = "overt"
ENGINE_USER = "overt-engine"
# The machine address of each name: the last byte in the lab's /24.
MACHINES = {"lb": 5, "db1": 11, "db2": 12, "db3": 13, "mq1": 21, "mq2": 22, "mq3": 23,
            "api1": 31, "api2": 32, "worker1": 41, "worker2": 42, "monitor1": 51,
            "monitor2": 52}
DBS = ("db1", "db2", "db3")
MQS = ("mq1", "mq2", "mq3")


@dataclass
class HaLab:
    """The deployment: its machines, processes, passwords and logs under `base`."""

    prefix: str
    network: ipaddress.IPv4Network
    base: Path
    secrets: dict[str, str] = field(default_factory=lambda: {
        name: secrets.token_urlsafe(16) for name in ("postgres", "replicator", "overt",
                                                      "rabbit", "engine")})
    processes: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)

    # ---- addresses and names

    @property
    def bridge(self) -> str:
        return f"{self.prefix}-habr"

    def namespace(self, machine: str) -> str:
        return f"{self.prefix}-{machine}"

    def ip(self, machine: str) -> str:
        return str(self.network.network_address + MACHINES[machine])

    @property
    def gateway_ip(self) -> str:
        return str(self.network.network_address + 1)

    @property
    def db_url(self) -> str:
        """The engine's database: the primary, wherever it is, through HAProxy."""
        return (f"postgresql+psycopg://overt:{self.secrets['overt']}@{self.ip('lb')}:"
                f"{PG_PORT}/overt")

    @property
    def bus_url(self) -> str:
        """The engine's broker account, with every broker of the cluster."""
        hosts = ",".join(f"{self.ip(mq)}:{AMQP_PORT}" for mq in MQS)
        return f"amqp://{ENGINE_USER}:{self.secrets['engine']}@{hosts}/{VHOST}"

    @property
    def node_bus_url(self) -> str:
        return "amqp://" + ",".join(f"{self.ip(mq)}:{AMQP_PORT}" for mq in MQS)

    @property
    def admin_url(self) -> str:
        return f"amqp://overt-admin:{self.secrets['rabbit']}@{self.ip('lb')}:{AMQP_PORT}/{VHOST}"

    @property
    def data_dir(self) -> Path:
        return self.base / "engine"

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "pki" / "ca.pem"

    def log(self, name: str) -> Path:
        return self.base / "logs" / f"{name}.log"

    # ---- building

    def build_network(self) -> None:
        netns.ensure_bridge(self.bridge)
        netns.ensure_address(self.bridge, ipaddress.IPv4Interface(
            f"{self.gateway_ip}/{self.network.prefixlen}"))
        for machine in MACHINES:
            name = self.namespace(machine)
            netns.ensure_namespace(name)
            netns.ensure_veth(f"{self.prefix}h{machine}", "eth0", name, self.bridge)
            netns.ensure_address("eth0", ipaddress.IPv4Interface(
                f"{self.ip(machine)}/{self.network.prefixlen}"), namespace=name)

    def spawn(self, machine: str, name: str, argv: list[str], *, user: str | None = None,
              env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        """Run `argv` on `machine` (in its namespace), as `user`, logging to logs/NAME.log."""
        prefix = ["ip", "netns", "exec", self.namespace(machine)]
        if user is not None:
            prefix += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"]
        self.log(name).parent.mkdir(parents=True, exist_ok=True)
        with self.log(name).open("ab") as out:
            process = subprocess.Popen(
                [*prefix, *argv], stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=str(cwd) if cwd else None,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                start_new_session=True)
        self.processes.setdefault(machine, []).append(process)

    def start_etcd(self) -> None:
        cluster = ",".join(f"{db}=http://{self.ip(db)}:2380" for db in DBS)
        for db in DBS:
            ip = self.ip(db)
            self.spawn(db, f"{db}-etcd", [
                "etcd", "--name", db, "--data-dir", str(self.base / db / "etcd"),
                "--listen-peer-urls", f"http://{ip}:2380",
                "--listen-client-urls", f"http://{ip}:2379",
                "--advertise-client-urls", f"http://{ip}:2379",
                "--initial-advertise-peer-urls", f"http://{ip}:2380",
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", f"{self.prefix}-etcd",
                "--heartbeat-interval", "100", "--election-timeout", "1000"])

    def start_patroni(self, db: str) -> None:
        """Patroni and its PostgreSQL on `db` (after a kill: the member rejoins)."""
        home = self.base / db
        (home / "run").mkdir(parents=True, exist_ok=True)
        config = {
            "scope": f"{self.prefix}-overt", "name": db,
            "restapi": {"listen": f"{self.ip(db)}:{PATRONI_PORT}",
                        "connect_address": f"{self.ip(db)}:{PATRONI_PORT}"},
            "etcd3": {"hosts": [f"{self.ip(d)}:2379" for d in DBS]},
            "bootstrap": {
                "dcs": {"ttl": 10, "loop_wait": 1, "retry_timeout": 4,
                        "maximum_lag_on_failover": 1048576,
                        "postgresql": {"use_pg_rewind": True, "parameters": {
                            "wal_log_hints": "on", "max_connections": 200}}},
                "initdb": [{"encoding": "UTF8"}, {"auth-local": "trust"}],
                "pg_hba": ["local all all trust",
                           f"host replication replicator {self.network} scram-sha-256",
                           f"host all all {self.network} scram-sha-256"]},
            "postgresql": {
                "listen": f"{self.ip(db)}:{PG_PORT}",
                "connect_address": f"{self.ip(db)}:{PG_PORT}",
                "data_dir": str(home / "data"), "bin_dir": "/usr/lib/postgresql/15/bin",
                "pgpass": str(home / "pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres", "password": self.secrets["postgres"]},
                    "replication": {"username": "replicator",
                                    "password": self.secrets["replicator"]},
                    "rewind": {"username": "postgres", "password": self.secrets["postgres"]}},
                "parameters": {"unix_socket_directories": str(home / "run")}},
        }
        (home / "patroni.yml").write_text(json.dumps(config))
        _chown_tree(home, "postgres")
        (home / "patroni.yml").chmod(0o600)
        self.spawn(db, f"{db}-patroni", ["patroni", str(home / "patroni.yml")], user="postgres",
                   cwd=home)

    def primary(self) -> str | None:
        """The database machine whose Patroni says it is the primary."""
        for db in DBS:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{self.ip(db)}:{PATRONI_PORT}/primary",
                             timeout=1).status_code == 200:
                    return db
        return None

    def replicas_streaming(self) -> int:
        primary = self.primary()
        if primary is None:
            return 0
        with contextlib.suppress(httpx.HTTPError):
            cluster = httpx.get(f"http://{self.ip(primary)}:{PATRONI_PORT}/cluster",
                                timeout=1).json()
            return sum(m.get("role") in ("replica", "sync_standby") and
                       m.get("state") in ("streaming", "running")
                       for m in cluster.get("members", []))
        return 0

    def create_engine_database(self) -> None:
        primary = self.primary()
        assert primary is not None
        psql = ["ip", "netns", "exec", self.namespace(primary), "runuser", "-u", "postgres",
                "--", "psql", "-h", str(self.base / primary / "run"), "-p", str(PG_PORT),
                "-v", "ON_ERROR_STOP=1", "-d", "postgres"]
        run([*psql], input=f"\\set pw '{self.secrets['overt']}'\n"
            "CREATE ROLE overt LOGIN PASSWORD :'pw';\nCREATE DATABASE overt OWNER overt;\n")

    def start_rabbitmq(self, mq: str) -> None:
        home = self.base / mq
        (home / "log").mkdir(parents=True, exist_ok=True)
        peers = [f"cluster_formation.classic_config.nodes.{i} = rabbit@{self.ip(m)}"
                 for i, m in enumerate(MQS, 1)]
        (home / "rabbitmq.conf").write_text("\n".join([
            f"listeners.tcp.default = {self.ip(mq)}:{AMQP_PORT}",
            f"management.tcp.ip = {self.ip(mq)}", f"management.tcp.port = {MANAGEMENT_PORT}",
            "cluster_formation.peer_discovery_backend = classic_config", *peers,
            "default_vhost = overt", "default_user = overt-admin",
            f"default_pass = {self.secrets['rabbit']}",
            "default_user_tags.administrator = true",
            "default_permissions.configure = .*", "default_permissions.read = .*",
            "default_permissions.write = .*", "loopback_users = none",
            "log.console = true", "log.file = false"]) + "\n")
        (home / "enabled_plugins").write_text("[rabbitmq_management].\n")
        cookie = self.base / "erlang" / ".erlang.cookie"
        if not cookie.exists():
            cookie.parent.mkdir(parents=True, exist_ok=True)
            cookie.write_text(secrets.token_hex(20))
            _chown_tree(cookie.parent, "rabbitmq")
            cookie.chmod(0o400)
        _chown_tree(home, "rabbitmq")
        self.spawn(mq, mq, ["/usr/lib/rabbitmq/bin/rabbitmq-server"], user="rabbitmq", env={
            "HOME": str(cookie.parent), "RABBITMQ_USE_LONGNAME": "true",
            "RABBITMQ_NODENAME": f"rabbit@{self.ip(mq)}",
            "RABBITMQ_MNESIA_BASE": str(home / "mnesia"), "RABBITMQ_LOG_BASE": str(home / "log"),
            "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(home / "rabbitmq.pid")}, cwd=cookie.parent)

    def rabbit_nodes_running(self, mq: str = "mq1") -> int:
        """How many brokers the cluster counts as running, asked of `mq`."""
        with contextlib.suppress(httpx.HTTPError, ValueError):
            nodes = httpx.get(f"http://{self.ip(mq)}:{MANAGEMENT_PORT}/api/nodes", timeout=2,
                              auth=("overt-admin", self.secrets["rabbit"])).json()
            return sum(bool(node.get("running")) for node in nodes)
        return 0

    def queues(self) -> list[dict[str, object]]:
        """The engine's queues as the broker's management API lists them."""
        reply = httpx.get(f"http://{self.ip('lb')}:{MANAGEMENT_PORT}/api/queues/{VHOST}",
                          auth=("overt-admin", self.secrets["rabbit"]), timeout=10)
        reply.raise_for_status()
        return [{"name": q["name"], "type": q.get("type"), "members": q.get("members", [])}
                for q in reply.json()]

    def make_engine_user(self) -> None:
        async def ensure() -> None:
            async with BrokerAdmin(f"http://{self.ip('lb')}:{MANAGEMENT_PORT}",
                                   username="overt-admin", password=self.secrets["rabbit"],
                                   vhost=VHOST, node_url=self.node_bus_url,
                                   allow_plain=True) as admin:
                await admin.ensure_engine_user(ENGINE_USER, self.secrets["engine"])
        import asyncio
        asyncio.run(ensure())

    def start_haproxy(self) -> None:
        def servers(machines: tuple[str, ...], port: int, check_port: int | None = None
                    ) -> list[str]:
            extra = f" port {check_port}" if check_port else ""
            return [f"  server {m} {self.ip(m)}:{port} check{extra}" for m in machines]
        lb = self.ip("lb")
        lines = [
            "global", "  maxconn 4000",
            "defaults", "  mode tcp", "  timeout connect 2s", "  timeout client 1h",
            "  timeout server 1h", "  timeout check 2s",
            # A connection refused by a dead server goes to another at once.
            "  option redispatch", "  retries 2",
            "  default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions",
            "listen api", f"  bind {lb}:{API_PORT}", *servers(("api1", "api2"), API_PORT),
            "listen gateway", f"  bind {lb}:{GATEWAY_PORT}",
            *servers(("api1", "api2"), GATEWAY_PORT),
            "listen postgres", f"  bind {lb}:{PG_PORT}", "  option httpchk GET /primary",
            "  http-check expect status 200", *servers(DBS, PG_PORT, PATRONI_PORT),
            "listen rabbitmq-management", f"  bind {lb}:{MANAGEMENT_PORT}",
            *servers(MQS, MANAGEMENT_PORT),
            "listen rabbitmq", f"  bind {lb}:{AMQP_PORT}", *servers(MQS, AMQP_PORT)]
        config = self.base / "haproxy.cfg"
        config.write_text("\n".join(lines) + "\n")
        self.spawn("lb", "haproxy", ["haproxy", "-db", "-f", str(config)])

    def engine_part(self, machine: str, part: str) -> None:
        env = {"OVERT_DB": self.db_url, "OVERT_BUS": self.bus_url,
               "OVERT_BROKER_QUORUM_QUEUES": "1", "OVERT_BROKER_ALLOW_PLAIN": "1",
               "OVERT_GATEWAY_PORT": str(GATEWAY_PORT), "OVERT_ADMIN_PASSWORD": PASSWORD,
               "OVERT_HEARTBEAT_TIMEOUT_S": "10", "OVERT_HOST_GRACE_S": "0",
               "OVERT_MONITOR_REPORT_INTERVAL_S": "2"}
        if part == "api":
            env |= {"OVERT_BROKER_ADMIN_URL": self.admin_url,
                    "OVERT_BROKER_NODE_URL": self.node_bus_url}
        self.spawn(machine, machine, [
            sys.executable, "-m", "overt", "engine", part, "--data-dir", str(self.data_dir),
            "--address", self.ip(machine), "--port", str(API_PORT),
            "--public-address", self.ip("lb")], env=env)

    def fleet(self, count: int, seed: str = "ha") -> None:
        """Simulated nodes (on this machine's side of the bridge), enrolled through HAProxy."""
        argv = [sys.executable, "-m", "overt", "simulate", "nodes",
                "--engine-url", f"https://{self.ip('lb')}:{GATEWAY_PORT}",
                "--data-dir", str(self.base / "fleet"), "--count", str(count),
                "--seed", seed, "--engine-ca-file", str(self.ca_file),
                "--status-file", str(self.base / "fleet.status.json"), "--log-level", "INFO"]
        self.log("fleet").parent.mkdir(parents=True, exist_ok=True)
        with self.log("fleet").open("ab") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL,
                                       env={**os.environ, "PYTHONUNBUFFERED": "1",
                                            "OVERT_BROKER_ALLOW_PLAIN": "1"})
        self.processes.setdefault("fleet", []).append(process)

    def connect(self, timeout: int = 30) -> sdk.Connection:
        return sdk.Connection(url=f"https://{self.ip('lb')}:{API_PORT}/ovirt-engine/api",
                              username="admin@internal", password=PASSWORD,
                              ca_file=str(self.ca_file), timeout=timeout)

    def api_answers(self) -> bool:
        try:
            conn = self.connect(timeout=5)
            try:
                conn.test(raise_exception=True)
            finally:
                conn.close()
            return True
        except Exception:
            return False

    # ---- failures

    def kill_machine(self, machine: str) -> None:
        """Every process of `machine` killed at once (SIGKILL), as a power cut."""
        for pid in netns.pids_in(self.namespace(machine)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for process in self.processes.pop(machine, []):
            process.wait()

    # ---- tearing down

    def down(self) -> None:
        for machine in MACHINES:  # all at once: nothing fails over while others stop
            for pid in netns.pids_in(self.namespace(machine)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for process in self.processes.pop("fleet", []):
            process.kill()
        for processes in self.processes.values():
            for process in processes:
                process.wait()
        self.processes.clear()
        for machine in MACHINES:
            netns.delete_namespace(self.namespace(machine))
        netns.delete_links([self.bridge])

    def print_logs(self, tail: int = 3000) -> None:
        """The end of every log; the engine parts' errors in full."""
        for log in sorted((self.base / "logs").glob("*.log")):
            text = log.read_text(errors="replace")
            print(f"==== {log.name}\n{text[-tail:]}")
            if log.stem.startswith(("api", "worker", "monitor")) and "Traceback" in text:
                print(f"==== {log.name}, from its first traceback\n"
                      f"{text[text.index('Traceback') - 300:][:12000]}")


def _chown_tree(path: Path, user: str) -> None:
    owner = pwd.getpwnam(user)
    for item in (path, *path.rglob("*")):
        os.chown(item, owner.pw_uid, owner.pw_gid)


def lab_network() -> tuple[str, ipaddress.IPv4Network]:
    """This run's prefix and the /24 the deployment takes from the tests' lab block."""
    prefix = os.environ.get("OVERT_TEST_LAB_PREFIX", "ovtst")[:4]
    block = ipaddress.IPv4Network(os.environ.get("OVERT_TEST_LAB_BLOCK", "10.211.0.0/16"))
    # The last /24 of the block: the lab's own networks use the first ones.
    return prefix, list(block.subnets(new_prefix=24))[-1]


@contextlib.contextmanager
def ha_lab() -> Iterator[HaLab]:
    """The whole deployment, up and answering; removed (with its data) on exit."""
    prefix, network = lab_network()
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-ha-"))
    base.chmod(0o755)
    lab = HaLab(prefix, network, base)
    since = time.monotonic()

    def step(what: str) -> None:
        print(f"engine HA lab: {what} at {elapsed(since)} s", flush=True)
    try:
        lab.build_network()
        lab.start_etcd()
        lab.start_rabbitmq("mq1")
        for db in DBS:
            lab.start_patroni(db)
        lab.start_haproxy()
        wait_until(lambda: lab.rabbit_nodes_running() == 1, 90, "the first broker")
        step("first broker up")
        lab.start_rabbitmq("mq2")
        lab.start_rabbitmq("mq3")
        wait_until(lambda: lab.primary() is not None, 90, "a PostgreSQL primary")
        lab.create_engine_database()
        migrate.upgrade(lab.db_url)
        step("database made and migrated")
        wait_until(lambda: lab.rabbit_nodes_running() == 3, 120, "three brokers in the cluster")
        step("broker cluster up")
        lab.make_engine_user()
        lab.engine_part("api1", "api")
        wait_until(lambda: lab.ca_file.exists() and lab.api_answers(), 120, "the API")
        step("first api answering")
        for machine, part in (("api2", "api"), ("worker1", "worker"), ("worker2", "worker"),
                              ("monitor1", "monitor"), ("monitor2", "monitor")):
            lab.engine_part(machine, part)
        wait_until(lambda: lab.replicas_streaming() == 2, 90, "two streaming replicas")
        step("up")
        yield lab
    finally:
        lab.down()
        lab.print_logs()
        keep = os.environ.get("OVERT_TEST_HA_LOGS")  # a directory for a post-mortem
        if keep:
            shutil.copytree(base / "logs", Path(keep), dirs_exist_ok=True)
            for mq in MQS:
                shutil.copytree(base / mq / "log", Path(keep) / f"{mq}-server",
                                dirs_exist_ok=True)
        shutil.rmtree(base, ignore_errors=True)


def elapsed(since: float) -> float:
    return round(time.monotonic() - since, 1)
