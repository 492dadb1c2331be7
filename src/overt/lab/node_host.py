"""A lab node's hypervisor: its own libvirtd and virtlogd in the node's namespaces.

The node's /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/log/libvirt,
/var/cache/libvirt and /var/lib/overt are private directories below the lab's
state directory, so each node has its own host UUID, domains and sockets.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from overt.lab import ovs
from overt.lab.anchor import enter, read_anchor, start_anchor
from overt.system.commands import run
from overt.system.waiting import unix_socket_answers, wait_until

PRIVATE_DIRS = {
    "etc-libvirt": "/etc/libvirt",
    "run-libvirt": "/run/libvirt",
    "var-lib-libvirt": "/var/lib/libvirt",
    "log-libvirt": "/var/log/libvirt",
    "cache-libvirt": "/var/cache/libvirt",
    "var-lib-overt": "/var/lib/overt",
    **ovs.PRIVATE_DIRS,
}


class NodeHypervisor:
    """Paths and daemons of one lab node's libvirt."""

    def __init__(self, host_dir: Path, namespace: str, host_uuid: uuid.UUID) -> None:
        self.host_dir = host_dir
        self.namespace = namespace
        self.host_uuid = host_uuid
        self.pid_dir = host_dir / "pids"

    @property
    def socket(self) -> Path:
        return self.host_dir / "run-libvirt" / "libvirt-sock"

    @property
    def uri(self) -> str:
        """The libvirt URI that reaches this node's libvirtd from the root namespace."""
        return f"qemu+unix:///system?socket={self.socket}"

    def anchor(self) -> int | None:
        return read_anchor(self.pid_dir / "anchor.pid")

    def ensure_running(self) -> None:
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        anchor = self.anchor()
        if anchor is None:
            self._prepare_dirs()
            anchor = start_anchor(
                self.namespace, self.pid_dir / "anchor.pid",
                binds={self.host_dir / name: target for name, target in PRIVATE_DIRS.items()})
        virtlogd_sock = str(self.host_dir / "run-libvirt" / "virtlogd-sock")
        if not unix_socket_answers(virtlogd_sock):
            run(enter(anchor, ["virtlogd", "-d", "-p", str(self.pid_dir / "virtlogd.pid")]))
            wait_until(lambda: unix_socket_answers(virtlogd_sock), timeout=20,
                       what=f"virtlogd of {self.namespace} answering")
        if not unix_socket_answers(str(self.socket)):
            run(enter(anchor, ["libvirtd", "-d", "-p", str(self.pid_dir / "libvirtd.pid")]))
            wait_until(lambda: unix_socket_answers(str(self.socket)), timeout=30,
                       what=f"libvirtd of {self.namespace} answering")
        if ovs.installed():
            ovs.ensure_running(anchor, self.host_dir)

    def _prepare_dirs(self) -> None:
        etc = self.host_dir / "etc-libvirt"
        if not etc.exists():
            copy_libvirt_config(etc, self.host_uuid)
        var_lib = self.host_dir / "var-lib-libvirt"
        if not var_lib.exists():
            copy_directories(Path("/var/lib/libvirt"), var_lib)
        cache = self.host_dir / "cache-libvirt"
        if not cache.exists():
            # A copy of the machine's QEMU capability cache spares each node a probe.
            shutil.copytree("/var/cache/libvirt", cache, symlinks=True)
        for name in PRIVATE_DIRS:
            (self.host_dir / name).mkdir(parents=True, exist_ok=True)


def copy_libvirt_config(etc: Path, host_uuid: uuid.UUID | str) -> None:
    """The machine's /etc/libvirt for a private libvirtd: no domains, networks or pools of
    the machine's own, and a host UUID of its own."""
    shutil.copytree("/etc/libvirt", etc, symlinks=True)
    for leftover in [*etc.glob("qemu/*.xml"), etc / "qemu" / "autostart",
                     etc / "qemu" / "networks" / "autostart", etc / "storage"]:
        if leftover.is_dir():
            shutil.rmtree(leftover)
        elif leftover.exists():
            leftover.unlink()
    with (etc / "libvirtd.conf").open("a") as conf:
        conf.write(f'\n# a private libvirtd of Overt\nhost_uuid = "{host_uuid}"\n')


def copy_directories(source: Path, target: Path) -> None:
    """Recreate `source`'s directory tree (owners and modes, no files) at `target`."""
    for path in [source, *sorted(p for p in source.rglob("*") if p.is_dir())]:
        dest = target / path.relative_to(source)
        dest.mkdir(parents=True, exist_ok=True)
        st = path.stat()
        shutil.copystat(path, dest)
        shutil.chown(dest, st.st_uid, st.st_gid)
