"""The host's network interfaces: what they are (capabilities) and their byte counters (stats).

Read from /sys, /proc and `ip`, in the agent's own network namespace (a lab node's).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from overt.protocol.host import NicInfo
from overt.system.commands import CommandFailed, ToolMissing, run

log = logging.getLogger(__name__)

SYS_NET = Path("/sys/class/net")
PROC_NET_DEV = Path("/proc/net/dev")
_SKIPPED = ("lo",)


def host_nics() -> tuple[NicInfo, ...]:
    """The host's interfaces with their MACs, addresses and whether they are bridges."""
    addresses = _addresses()
    nics = []
    for path in sorted(SYS_NET.iterdir()) if SYS_NET.exists() else []:
        name = path.name
        if name in _SKIPPED:
            continue
        nics.append(NicInfo(name=name, mac=_read(path / "address"),
                            addresses=tuple(addresses.get(name, ())),
                            bridge=(path / "bridge").is_dir(), speed_mbps=_speed(path),
                            mtu=_int(_read(path / "mtu"))))
    return tuple(nics)


def nic_counters() -> dict[str, tuple[int, int]]:
    """Received and transmitted bytes of each interface since boot."""
    try:
        return parse_proc_net_dev(PROC_NET_DEV.read_text())
    except OSError:
        return {}


def parse_proc_net_dev(text: str) -> dict[str, tuple[int, int]]:
    counters = {}
    for line in text.splitlines()[2:]:
        name, _, numbers = line.partition(":")
        fields = numbers.split()
        if len(fields) >= 9 and name.strip() not in _SKIPPED:
            counters[name.strip()] = (int(fields[0]), int(fields[8]))
    return counters


def link_addresses() -> dict[str, list[str]]:
    """Each interface's addresses ("10.1.2.3/24"), by interface name."""
    return _addresses()


def _addresses() -> dict[str, list[str]]:
    try:
        data = json.loads(run(["ip", "-j", "address", "show"], timeout=10).stdout)
    except (CommandFailed, ToolMissing, ValueError) as exc:
        log.warning("cannot list the host's addresses: %s", exc)
        return {}
    found: dict[str, list[str]] = {}
    for link in data:
        found[link["ifname"]] = [f"{a['local']}/{a['prefixlen']}"
                                 for a in link.get("addr_info", []) if "local" in a]
    return found


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _speed(path: Path) -> int | None:
    value = _read(path / "speed")
    try:
        speed = int(value) if value is not None else -1
    except ValueError:
        return None
    return speed if speed > 0 else None
