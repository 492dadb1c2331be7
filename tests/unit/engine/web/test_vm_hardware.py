"""The VM page's Hardware section in words: every bios type has its machine and firmware,
the boot order is numbered, the CD and CPU topology read as a user reads them."""

import pytest

from overt.engine.db.tables import Disk, Vm
from overt.engine.web.vm_hardware import hardware_facts
from overt.protocol.vm import BiosType


def _shown(vm: Vm, cdrom: Disk | None = None) -> dict[str, str]:
    return {fact.label: fact.text for fact in hardware_facts(vm, cdrom)}


@pytest.mark.parametrize(("bios", "machine", "firmware"), [
    (BiosType.I440FX_SEA_BIOS, "i440FX", "BIOS (SeaBIOS)"),
    (BiosType.Q35_SEA_BIOS, "Q35", "BIOS (SeaBIOS)"),
    (BiosType.Q35_OVMF, "Q35", "UEFI (OVMF)"),
    (BiosType.Q35_SECURE_BOOT, "Q35", "UEFI with Secure Boot (OVMF)"),
])
def test_each_bios_type_in_words(bios: BiosType, machine: str, firmware: str) -> None:
    vm = Vm(bios_type=bios.value, boot_devices=["hd"], cpu_sockets=1, cpu_cores=1,
            cpu_threads=1, os_type="other")
    shown = _shown(vm)
    assert (shown["Machine"], shown["Firmware"]) == (machine,
                                                     f"{firmware} · bios.type {bios.value}")


def test_boot_order_cd_and_cpus() -> None:
    vm = Vm(bios_type="q35_ovmf", boot_devices=["cdrom", "network", "hd"], cpu_sockets=2,
            cpu_cores=1, cpu_threads=2, os_type="rhel_9x64")
    shown = _shown(vm, Disk(name="debian-12.iso"))
    assert list(shown) == ["Machine", "Firmware", "Boot order", "CD-ROM", "Operating system",
                           "CPUs"]
    assert shown["Boot order"] == "1. CD-ROM, 2. Network (PXE), 3. Hard disk"
    assert shown["CD-ROM"] == "debian-12.iso"
    assert shown["Operating system"] == "rhel_9x64"
    assert shown["CPUs"] == "4 (2 sockets × 1 core × 2 threads)"
    assert _shown(Vm(bios_type="q35_ovmf", boot_devices=[], cpu_sockets=1, cpu_cores=1,
                     cpu_threads=1, os_type="other"))["Boot order"] == "1. Hard disk"
