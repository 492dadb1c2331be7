"""Open vSwitch on a lab node: its own ovsdb-server and ovs-vswitchd in the node's
namespaces, with private /etc/openvswitch and /run/openvswitch, so the node's agent and
libvirt (which plug VM NICs with `ovs-vsctl`) use the node's switch at the default paths.

Bridges use the userspace datapath (`datapath_type=netdev`): this kernel has no
openvswitch module, and the userspace one tags and isolates VLANs for real.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from overt.lab.anchor import enter
from overt.system.commands import run, succeeds

ETC = "/etc/openvswitch"
RUN = "/run/openvswitch"
SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
PRIVATE_DIRS = {"etc-openvswitch": ETC, "run-openvswitch": RUN}


def installed() -> bool:
    return all(shutil.which(tool) for tool in ("ovsdb-server", "ovs-vswitchd", "ovs-vsctl"))


def ensure_running(anchor: int, host_dir: Path) -> None:
    """Start the node's switch daemons if they are not answering (idempotent)."""
    for name, target in PRIVATE_DIRS.items():
        source = host_dir / name
        source.mkdir(parents=True, exist_ok=True)
        if not succeeds(enter(anchor, ["mountpoint", "-q", target])):
            run(enter(anchor, ["mkdir", "-p", target]))
            run(enter(anchor, ["mount", "--bind", str(source), target]))
    if not (host_dir / "etc-openvswitch" / "conf.db").exists():
        run(enter(anchor, ["ovsdb-tool", "create", f"{ETC}/conf.db", SCHEMA]))
    if not succeeds(enter(anchor, ["ovs-vsctl", "--timeout=2", "show"])):
        run(enter(anchor, ["ovsdb-server", f"{ETC}/conf.db",
                           f"--remote=punix:{RUN}/db.sock", f"--pidfile={RUN}/ovsdb-server.pid",
                           "--detach", f"--log-file={RUN}/ovsdb-server.log"]))
        run(enter(anchor, ["ovs-vsctl", "--timeout=10", "--no-wait", "init"]))
    if not _vswitchd_answers(anchor):
        run(enter(anchor, ["ovs-vswitchd", f"unix:{RUN}/db.sock",
                           f"--pidfile={RUN}/ovs-vswitchd.pid", "--detach",
                           f"--log-file={RUN}/ovs-vswitchd.log"]))
        run(enter(anchor, ["ovs-vsctl", "--timeout=20", "wait-until", "Open_vSwitch", ".",
                           "cur_cfg>=0"]))


def _vswitchd_answers(anchor: int) -> bool:
    pidfile = Path(f"/proc/{anchor}/root{RUN}/ovs-vswitchd.pid")
    try:
        pid = int(pidfile.read_text())
    except (OSError, ValueError):
        return False
    return succeeds(enter(anchor, ["ovs-appctl", "-t", f"{RUN}/ovs-vswitchd.{pid}.ctl",
                                   "version"]))
