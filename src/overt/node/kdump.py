"""Whether this machine's crash kernel would tell the engine it dumps (vdsm's
`osinfo.kdump_status`): the engine waits for a non responsive host's fence_kdump messages
before fencing it only where this says `enabled`.

- The crash kernel: `/sys/kernel/kexec_crash_loaded` is 1 once the kdump service loaded it
  (RHEL's `kdump`, Debian's `kdump-tools`), 0 when none is loaded; unreadable: unknown.
- fence_kdump targets: a `fence_kdump_nodes` line in `/etc/kdump.conf` (kexec-tools on
  RHEL-like hosts; its kdump initrd then runs `fence_kdump_send`). Debian's kdump-tools
  (`/etc/default/kdump-tools`) has no fence_kdump setting of its own, so a Debian host with
  no `/etc/kdump.conf` sends none: disabled. Neither configuration readable: unknown.

`root` is "/" on a node; tests point it at a directory laid out the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path

from overt.protocol.host import KdumpStatus

log = logging.getLogger(__name__)

CRASH_LOADED = "sys/kernel/kexec_crash_loaded"
KDUMP_CONF = "etc/kdump.conf"  # kexec-tools (RHEL, Fedora, CentOS)
KDUMP_TOOLS = "etc/default/kdump-tools"  # Debian, Ubuntu


def kdump_status(root: Path = Path("/")) -> KdumpStatus:
    """The host's kdump status; never raises (a fact it cannot read is `unknown`)."""
    loaded = _read(root / CRASH_LOADED)
    if loaded is None or loaded.strip() not in ("0", "1"):
        log.info("cannot read %s: kdump status unknown", root / CRASH_LOADED)
        return KdumpStatus.UNKNOWN
    if loaded.strip() == "0":
        return KdumpStatus.DISABLED
    conf = _read(root / KDUMP_CONF)
    if conf is None:
        if (root / KDUMP_TOOLS).is_file():
            return KdumpStatus.DISABLED  # kdump-tools alone sends no fence_kdump message
        log.info("cannot read %s: fence_kdump configuration unknown", root / KDUMP_CONF)
        return KdumpStatus.UNKNOWN
    return KdumpStatus.ENABLED if fence_kdump_nodes(conf) else KdumpStatus.DISABLED


def fence_kdump_nodes(conf: str) -> tuple[str, ...]:
    """The fence_kdump targets an `/etc/kdump.conf` names (comments and blanks skipped)."""
    nodes: list[str] = []
    for line in conf.splitlines():
        words = line.partition("#")[0].split()
        if words and words[0] == "fence_kdump_nodes":
            nodes.extend(words[1:])
    return tuple(nodes)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None
