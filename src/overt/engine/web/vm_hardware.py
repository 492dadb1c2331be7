"""What the VM page's Hardware section says: the machine and its firmware (oVirt's
`bios.type` in words), the boot order, the CD in the drive, the operating system type
and the virtual CPUs, as the VM's next run (or its current one) has them."""

from __future__ import annotations

from dataclasses import dataclass

from overt.engine.db.tables import Disk, Vm
from overt.protocol.vm import BiosType, BootDevice

# oVirt's bios.type: (machine, firmware), as its portal says them.
BIOS: dict[str, tuple[str, str]] = {
    BiosType.I440FX_SEA_BIOS: ("i440FX", "BIOS (SeaBIOS)"),
    BiosType.Q35_SEA_BIOS: ("Q35", "BIOS (SeaBIOS)"),
    BiosType.Q35_OVMF: ("Q35", "UEFI (OVMF)"),
    BiosType.Q35_SECURE_BOOT: ("Q35", "UEFI with Secure Boot (OVMF)"),
}
BOOT: dict[str, str] = {BootDevice.HD: "Hard disk", BootDevice.NETWORK: "Network (PXE)",
                        BootDevice.CDROM: "CD-ROM"}


@dataclass(frozen=True)
class Fact:
    label: str
    text: str
    key: str  # the row's data-testid: vm-hw-KEY


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def hardware_facts(vm: Vm, cdrom: Disk | None) -> list[Fact]:
    """The section's rows, in the order shown."""
    machine, firmware = BIOS.get(vm.bios_type, (vm.bios_type, "unknown"))
    boot = [BOOT.get(device, device) for device in vm.boot_devices] or ["Hard disk"]
    cpus = vm.cpu_sockets * vm.cpu_cores * vm.cpu_threads
    return [
        Fact("Machine", machine, "machine"),
        Fact("Firmware", f"{firmware} · bios.type {vm.bios_type}", "firmware"),
        Fact("Boot order", ", ".join(f"{n}. {d}" for n, d in enumerate(boot, 1)), "boot"),
        Fact("CD-ROM", cdrom.name if cdrom is not None else "empty", "cdrom"),
        Fact("Operating system", vm.os_type, "os"),
        Fact("CPUs", f"{cpus} ({_plural(vm.cpu_sockets, 'socket')} × "
                     f"{_plural(vm.cpu_cores, 'core')} × {_plural(vm.cpu_threads, 'thread')})",
             "cpus"),
    ]
