"""Starting this machine's daemons when they do not answer (there is no systemd here).

Each `ensure_*` checks with a real connection first, so it is cheap and safe on a
machine where the daemon already runs.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import resource
import stat
from dataclasses import dataclass
from pathlib import Path

from overt.system.commands import run
from overt.system.waiting import NotReady, tcp_port_answers, unix_socket_answers, wait_until

log = logging.getLogger(__name__)

LIBVIRT_SOCKET = "/run/libvirt/libvirt-sock"
VIRTLOGD_SOCKET = "/run/libvirt/virtlogd-sock"
LOCAL_LIBVIRT_URI = "qemu:///system"


def fix_kvm_permissions(device: Path = Path("/dev/kvm")) -> None:
    """Give /dev/kvm group `kvm` and mode 0660, as udev would.

    Without it libvirt judges its QEMU capabilities stale on every call and
    re-probes QEMU, which makes each domain start take tens of seconds.
    """
    if not device.exists():
        return
    try:
        kvm_gid = grp.getgrnam("kvm").gr_gid
    except KeyError:
        return
    st = device.stat()
    if st.st_gid != kvm_gid:
        os.chown(device, -1, kvm_gid)
    if stat.S_IMODE(st.st_mode) != 0o660:
        device.chmod(0o660)


def ensure_libvirtd(*, timeout: float = 30) -> None:
    """Make sure this machine's virtlogd and libvirtd answer on their sockets."""
    fix_kvm_permissions()
    if not unix_socket_answers(VIRTLOGD_SOCKET):
        log.info("starting virtlogd")
        run(["virtlogd", "-d"])
        wait_until(lambda: unix_socket_answers(VIRTLOGD_SOCKET), timeout=timeout,
                   what="virtlogd answering on " + VIRTLOGD_SOCKET)
    if not unix_socket_answers(LIBVIRT_SOCKET):
        log.info("starting libvirtd")
        run(["libvirtd", "-d"])
        wait_until(lambda: unix_socket_answers(LIBVIRT_SOCKET), timeout=timeout,
                   what="libvirtd answering on " + LIBVIRT_SOCKET)


@dataclass(frozen=True)
class RabbitNode:
    """A RabbitMQ node on this machine: Debian's own (the default), or a private one with
    its own name, ports and data directory (tests restart one without disturbing others)."""

    name: str | None = None  # None: the system node, rabbit@HOSTNAME
    amqp_port: int = 5672
    management_port: int = 15672
    base_dir: Path | None = None  # a private node's data, logs and configuration
    config: tuple[str, ...] = ()  # a private node's extra rabbitmq.conf lines (TLS, ...)

    @property
    def private(self) -> bool:
        return self.name is not None

    def tool(self, program: str) -> list[str]:
        """argv of a RabbitMQ tool (rabbitmqctl, rabbitmq-plugins) aimed at this node."""
        return [program, "-n", f"{self.name}@localhost"] if self.name else [program]

    def environment(self) -> dict[str, str] | None:
        if self.base_dir is None:
            return None
        base = self.base_dir
        return {
            **os.environ,
            "RABBITMQ_NODENAME": f"{self.name}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.amqp_port + 20000),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
        }

    @property
    def log_dir(self) -> Path:
        return self.base_dir / "log" if self.base_dir else Path("/var/log/rabbitmq")


SYSTEM_RABBITMQ = RabbitNode()
RABBITMQ_HOME = Path("/var/lib/rabbitmq")  # the rabbitmq user's home: its Erlang cookie
RABBITMQ_MAX_FILES = 65536


def ensure_rabbitmq(node: RabbitNode = SYSTEM_RABBITMQ, *, timeout: float = 90) -> None:
    """Make sure RabbitMQ answers on its AMQP port, with its management API enabled.

    Starts it (`rabbitmq-server -detached`) when nothing answers; a broker that
    already runs only gets the management plugin if it lacks it.
    """
    if not tcp_port_answers("127.0.0.1", node.amqp_port):
        _start_rabbitmq(node, timeout)
    if not tcp_port_answers("127.0.0.1", node.management_port):
        log.info("enabling RabbitMQ's management plugin")
        run([*node.tool("rabbitmq-plugins"), "enable", "rabbitmq_management"],
            env=node.environment(), timeout=timeout)
        wait_until(lambda: tcp_port_answers("127.0.0.1", node.management_port),
                   timeout=timeout, what=f"RabbitMQ's management API on {node.management_port}")


def _start_rabbitmq(node: RabbitNode, timeout: float) -> None:
    log.info("starting RabbitMQ%s", f" node {node.name}" if node.name else "")
    if node.base_dir is not None:
        _write_private_config(node, node.base_dir)
    else:
        run(["rabbitmq-plugins", "enable", "--offline", "rabbitmq_management"])
    _spawn_rabbitmq_server(node)
    try:
        wait_until(lambda: tcp_port_answers("127.0.0.1", node.amqp_port), timeout=timeout,
                   what=f"RabbitMQ answering on port {node.amqp_port}", every=0.2)
    except NotReady as exc:
        raise NotReady(f"{exc}; its logs are in {node.log_dir}") from None


def _spawn_rabbitmq_server(node: RabbitNode) -> None:
    """`rabbitmq-server -detached` as the rabbitmq user, allowed many open files.

    Debian's wrapper switches user through `su`, whose PAM session cuts the limit
    of open files to 1024: about 800 connections, too few for a fleet of nodes.
    Switching with `setpriv` keeps this process's limit, raised to its maximum.
    """
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    files = RABBITMQ_MAX_FILES if hard == resource.RLIM_INFINITY else min(hard,
                                                                         RABBITMQ_MAX_FILES)
    startup_log = (node.base_dir or node.log_dir) / "startup_log"
    env = {**(node.environment() or os.environ), "HOME": str(RABBITMQ_HOME)}
    run(["prlimit", f"--nofile={files}:{files}", "setpriv", "--reuid=rabbitmq",
         "--regid=rabbitmq", "--init-groups", "sh", "-c",
         f'exec /usr/lib/rabbitmq/bin/rabbitmq-server -detached >"{startup_log}" 2>&1'],
        env=env, cwd=str(RABBITMQ_HOME))


def _write_private_config(node: RabbitNode, base: Path) -> None:
    base.mkdir(parents=True, exist_ok=True)
    lines = ["management.tcp.ip = 127.0.0.1", f"management.tcp.port = {node.management_port}",
             *node.config]
    (base / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
    (base / "enabled_plugins").write_text("[rabbitmq_management].\n")
    # The server runs as the rabbitmq user (Debian's wrapper switches to it).
    owner = pwd.getpwnam("rabbitmq")
    for path in (base, *base.rglob("*")):
        os.chown(path, owner.pw_uid, owner.pw_gid)


def stop_rabbitmq(node: RabbitNode, *, timeout: float = 60) -> None:
    """Stop a RabbitMQ node and wait until its AMQP port is closed."""
    log.info("stopping RabbitMQ%s", f" node {node.name}" if node.name else "")
    run([*node.tool("rabbitmqctl"), "stop"], env=node.environment(), timeout=timeout)
    wait_until(lambda: not tcp_port_answers("127.0.0.1", node.amqp_port), timeout=timeout,
               what=f"RabbitMQ closing port {node.amqp_port}")


def reload_rabbitmq_tls(node: RabbitNode = SYSTEM_RABBITMQ) -> None:
    """Make RabbitMQ read its TLS files again (it caches them): connections made from now
    on get the certificate on disk; open ones keep theirs."""
    run([*node.tool("rabbitmqctl"), "eval", "ssl:clear_pem_cache()."], env=node.environment(),
        timeout=60)


def ensure_rabbitmq_admin(username: str, password: str, *, vhost: str,
                          node: RabbitNode = SYSTEM_RABBITMQ) -> None:
    """An administrator account (management API, all rights on `vhost`) with this password.

    The password goes to rabbitmqctl on its standard input, never on a command line.
    """
    ctl, env = node.tool("rabbitmqctl"), node.environment()
    if run([*ctl, "add_user", username], input=password, env=env, check=False).returncode:
        run([*ctl, "change_password", username], input=password, env=env)
    run([*ctl, "set_user_tags", username, "administrator"], env=env)
    if vhost not in run([*ctl, "list_vhosts", "--quiet", "--no-table-headers"],
                        env=env).stdout.split():
        run([*ctl, "add_vhost", vhost], env=env)
    run([*ctl, "set_permissions", "-p", vhost, username, ".*", ".*", ".*"], env=env)
