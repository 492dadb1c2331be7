"""DHCP clients on a host network's bridge, left running to renew their leases as on an
oVirt host: busybox `udhcpc` for IPv4, ISC `dhclient -6` for DHCPv6. Each runs with its
own pid, lease and script files under the agent's `DIR` (never the system's), and its
script puts the leased address on the bridge and takes it off again when the lease goes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

from overt.system.commands import CommandFailed, ToolMissing, run

# What udhcpc runs on its events: the leased address (and router) on the bridge, and the
# address gone again when the lease is released or lost.
DHCP4_SCRIPT = """#!/bin/sh
case "$1" in
    bound|renew)
        ip -4 address flush dev "$interface"
        ip address replace "$ip/$mask" dev "$interface"
        if [ -n "$router" ]; then
            ip route replace default via "${router%% *}" dev "$interface"
        fi ;;
    deconfig|leasefail|nak)
        ip -4 address flush dev "$interface" ;;
esac
exit 0
"""

# What dhclient -6 runs: the leased address on the bridge, off again when released,
# expired or the client stops. (DHCPv6 carries no prefix length: see PREFIX.)
DHCP6_SCRIPT = """#!/bin/sh
case "$reason" in
    BOUND6|RENEW6|REBIND6|REBOOT6)
        if [ -n "$old_ip6_address" ] && [ "$old_ip6_address" != "$new_ip6_address" ]; then
            ip -6 address del "$old_ip6_address/$old_ip6_prefixlen" dev "$interface"
        fi
        if [ -n "$new_ip6_address" ]; then
            ip -6 address replace "$new_ip6_address/$new_ip6_prefixlen" dev "$interface"
        fi ;;
    EXPIRE6|RELEASE6|STOP6)
        if [ -n "$old_ip6_address" ]; then
            ip -6 address del "$old_ip6_address/$old_ip6_prefixlen" dev "$interface"
        fi ;;
esac
exit 0
"""


# The prefix length dhclient gives a leased address (and must give it again on release
# for the script to remove it): the common /64 of an IPv6 LAN.
PREFIX = ("--address-prefix-len", "64")


def start_dhcp4(directory: Path, bridge: str) -> None:
    """udhcpc on the bridge: it waits a few seconds for the first lease, then goes on
    trying in the background."""
    pid_file = directory / f"{bridge}.pid"
    if alive(pid_file):
        return
    script = _script(directory, "udhcpc.script", DHCP4_SCRIPT)
    run(["busybox", "udhcpc", "-i", bridge, "-s", str(script), "-p", str(pid_file),
         "-t", "4", "-T", "1", "-b", "-R"], timeout=30)


def stop_dhcp4(directory: Path, bridge: str) -> None:
    """Stop udhcpc (-R: it releases the lease and drops the address)."""
    _terminate(directory / f"{bridge}.pid")


def start_dhcp6(directory: Path, bridge: str) -> None:
    """dhclient -6 on the bridge, in the background at once; it solicits from the bridge's
    link-local address, so it starts once that address has passed duplicate detection."""
    pid_file = directory / f"{bridge}.pid6"
    if alive(pid_file):
        return
    _wait_link_local(bridge, timeout_s=10)
    script = _script(directory, "dhclient6.script", DHCP6_SCRIPT)
    run(["dhclient", "-6", "-nw", *PREFIX, "-pf", str(pid_file),
         "-lf", str(directory / f"{bridge}.leases6"), "-sf", str(script), bridge],
        timeout=30)


def stop_dhcp6(directory: Path, bridge: str) -> None:
    """Release the lease (the script drops the address) and stop the client."""
    pid_file = directory / f"{bridge}.pid6"
    if alive(pid_file):
        script = _script(directory, "dhclient6.script", DHCP6_SCRIPT)
        with contextlib.suppress(CommandFailed, ToolMissing, TimeoutError):
            run(["dhclient", "-6", "-r", *PREFIX, "-pf", str(pid_file), "-lf",
                 str(directory / f"{bridge}.leases6"), "-sf", str(script), bridge],
                timeout=20, check=False)
    _terminate(pid_file)


def alive(pid_file: Path) -> int | None:
    """The pid in `pid_file` if that process still runs."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _script(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / name
    if not script.exists() or script.read_text() != text:
        script.write_text(text)
        script.chmod(0o755)
    return script


def _terminate(pid_file: Path) -> None:
    pid = alive(pid_file)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while alive(pid_file) and time.monotonic() < deadline:
            time.sleep(0.05)
    pid_file.unlink(missing_ok=True)


def _wait_link_local(bridge: str, timeout_s: float) -> None:
    """Until the bridge has a link-local address that is no longer tentative."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            data = json.loads(run(["ip", "-6", "-j", "address", "show", "dev", bridge,
                                   "scope", "link"], timeout=10).stdout or "[]")
        except (CommandFailed, ValueError):
            data = []
        infos = [a for link in data for a in link.get("addr_info", [])]
        if infos and not any(a.get("tentative") for a in infos):
            return
        time.sleep(0.1)
