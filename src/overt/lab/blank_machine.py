"""A blank machine in the lab: a QEMU machine with no disk that boots from the network.

It stands for a bare server racked on the lab's management network: one NIC (a tap on the
network's bridge, so it talks to whatever serves DHCP and TFTP there, e.g. the engine's
network services), boot order network only, and enough memory for the Overt node image
(kernel + a ~120 MiB initramfs unpacked into RAM, libvirtd, the agent and a small guest of
its own). Software emulation (TCG): this machine kind has no usable KVM. Its serial
console goes to a file, read by whoever waits for it to boot.

Started by `Lab.blank_machine(...)`; the lab's teardown stops it (its command line names
the lab's state directory) and removes its tap (`Topology.blank_tap`).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from overt.lab import netns
from overt.lab.topology import LabError
from overt.system.commands import run
from overt.system.processes import alive

MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
# The node image unpacks into RAM (~0.5 GiB), then libvirtd, the agent and a guest.
DEFAULT_MEMORY_MIB = 2048
MIN_MEMORY_MIB = 1024


@dataclass(frozen=True)
class BlankMachineSpec:
    name: str
    mac: str
    tap: str  # on `bridge`, made before QEMU starts
    bridge: str
    directory: Path  # its console, pid file and QEMU's own log
    system_uuid: uuid.UUID  # its SMBIOS (DMI) UUID, as a server's firmware tells it
    memory_mib: int = DEFAULT_MEMORY_MIB
    cpus: int = 2

    def validate(self) -> None:
        if not NAME.match(self.name):
            raise LabError(f"blank machine name {self.name!r} must be lowercase letters, "
                           "digits and '-', starting with a letter")
        if not MAC.match(self.mac):
            raise LabError(f"{self.mac!r} is not a MAC address (aa:bb:cc:dd:ee:ff, lower case)")
        if int(self.mac[:2], 16) & 1:
            raise LabError(f"{self.mac} is a multicast address: give a unicast MAC")
        if self.memory_mib < MIN_MEMORY_MIB:
            raise LabError(f"a blank machine needs at least {MIN_MEMORY_MIB} MiB for the node "
                           f"image, not {self.memory_mib}")
        if not 1 <= self.cpus <= 8:
            raise LabError(f"a blank machine has 1 to 8 CPUs, not {self.cpus}")

    @property
    def console(self) -> Path:
        return self.directory / "console.log"

    @property
    def pidfile(self) -> Path:
        return self.directory / "qemu.pid"

    @property
    def qemu_log(self) -> Path:
        return self.directory / "qemu.log"


def qemu_argv(spec: BlankMachineSpec) -> list[str]:
    """QEMU's command line: TCG, no disk, one virtio NIC on the tap, network boot only (its
    iPXE ROM from Debian's ipxe-qemu), the serial console into a file, daemonized. A
    machine that powers off or reboots stays off (`-no-reboot`), as a panic would leave it."""
    return [
        "qemu-system-x86_64", "-name", spec.name, "-uuid", str(spec.system_uuid),
        "-machine", "q35,accel=tcg", "-m", str(spec.memory_mib), "-smp", str(spec.cpus),
        "-nodefaults", "-no-user-config", "-no-reboot",
        "-display", "none", "-vga", "none", "-monitor", "none",
        "-serial", f"file:{spec.console}",
        "-boot", "order=n",
        "-netdev", f"tap,id=net0,ifname={spec.tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=net0,mac={spec.mac},bootindex=1",
        "-daemonize", "-pidfile", str(spec.pidfile), "-D", str(spec.qemu_log),
    ]


class BlankMachine:
    """One blank machine: power it on (its tap, then QEMU), read its console, power it off."""

    def __init__(self, spec: BlankMachineSpec) -> None:
        spec.validate()
        self.spec = spec

    @property
    def pid(self) -> int | None:
        try:
            pid = int(self.spec.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def console(self) -> str:
        try:
            return self.spec.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def power_on(self) -> None:
        """Start it from cold: a fresh console, the tap on the bridge, then QEMU."""
        spec = self.spec
        if self.running:
            raise LabError(f"blank machine {spec.name} is already running (pid {self.pid})")
        spec.directory.mkdir(parents=True, exist_ok=True)
        for stale in (spec.console, spec.pidfile, spec.qemu_log):
            stale.unlink(missing_ok=True)
        if not netns.link_exists(spec.bridge):
            raise LabError(f"the lab's bridge {spec.bridge} is missing; run `overt lab up`")
        if not netns.link_exists(spec.tap):
            netns.ip("tuntap", "add", "dev", spec.tap, "mode", "tap")
        netns.enslave(spec.tap, spec.bridge)
        run(qemu_argv(spec), timeout=60)

    def power_off(self, grace: float = 5.0) -> None:
        """Pull the plug (SIGTERM: QEMU quits at once), then remove the tap."""
        pid = self.pid
        if pid is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                deadline = time.monotonic() + grace
                while time.monotonic() < deadline and alive(pid):
                    time.sleep(0.05)
                if not alive(pid):
                    break
        netns.delete_links([self.spec.tap])
