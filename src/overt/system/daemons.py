"""Starting this machine's daemons when they do not answer (there is no systemd here).

Each `ensure_*` checks with a real connection first, so it is cheap and safe on a
machine where the daemon already runs.
"""

from __future__ import annotations

import grp
import logging
import os
import stat
from pathlib import Path

from overt.system.commands import run
from overt.system.waiting import unix_socket_answers, wait_until

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
