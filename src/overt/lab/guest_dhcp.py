"""DHCP for the lab's guest network: dnsmasq on the guest bridge in the root namespace.

It stands for the datacenter's router on the guest network, so test guests and
users' VMs on lab nodes get addresses the way they would in a real datacenter.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from overt.system.commands import run


class GuestDhcp:
    def __init__(self, state_dir: Path, bridge: str,
                 dhcp_range: tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]) -> None:
        self.state_dir = state_dir
        self.bridge = bridge
        self.dhcp_range = dhcp_range
        self.pidfile = state_dir / "guest-dhcp.pid"
        self.leasefile = state_dir / "guest-dhcp.leases"

    def running(self) -> bool:
        try:
            pid = int(self.pidfile.read_text())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return False
        return True

    def ensure_running(self) -> None:
        if self.running():
            return
        self.leasefile.touch()
        self.leasefile.chmod(0o666)  # dnsmasq drops to nobody before it writes leases
        low, high = self.dhcp_range
        run(["dnsmasq", "--conf-file=/dev/null", "--port=0", "--bind-interfaces",
             f"--interface={self.bridge}", "--except-interface=lo",
             f"--dhcp-range={low},{high},1h", f"--dhcp-leasefile={self.leasefile}",
             f"--pid-file={self.pidfile}", "--dhcp-authoritative"])

    def leases(self) -> dict[str, str]:
        """MAC address -> IPv4 address of the current leases."""
        try:
            lines = self.leasefile.read_text().splitlines()
        except FileNotFoundError:
            return {}
        return {fields[1]: fields[2] for fields in (line.split() for line in lines)
                if len(fields) >= 3}
