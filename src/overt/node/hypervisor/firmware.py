"""A domain's machine type and firmware from oVirt's `bios.type`.

SeaBIOS is QEMU's default and needs nothing in the XML. UEFI is OVMF (Debian's `ovmf`):
its code is a read-only pflash and each domain gets its own writable copy of the
variable store, made by libvirt from the template (and removed with the domain's
definition: the driver undefines with `VIR_DOMAIN_UNDEFINE_NVRAM`). Secure boot needs
the secure-boot build, the Microsoft-enrolled variables and SMM.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from overt.protocol.vm import BiosType

OVMF_DIR = Path("/usr/share/OVMF")


@dataclass(frozen=True)
class Firmware:
    machine: str  # QEMU machine type: `pc` (i440fx) or `q35`
    loader: Path | None = None  # OVMF's code (None: SeaBIOS)
    nvram_template: Path | None = None
    secure_boot: bool = False

    @property
    def has_ide(self) -> bool:
        """q35 has no IDE controller: cdroms go on SATA there."""
        return self.machine == "pc"


FIRMWARE = {
    BiosType.I440FX_SEA_BIOS: Firmware("pc"),
    BiosType.Q35_SEA_BIOS: Firmware("q35"),
    BiosType.Q35_OVMF: Firmware("q35", OVMF_DIR / "OVMF_CODE_4M.fd",
                                OVMF_DIR / "OVMF_VARS_4M.fd"),
    BiosType.Q35_SECURE_BOOT: Firmware("q35", OVMF_DIR / "OVMF_CODE_4M.secboot.fd",
                                       OVMF_DIR / "OVMF_VARS_4M.ms.fd", secure_boot=True),
}


def add_firmware(os_: ET.Element, features: ET.Element, firmware: Firmware) -> None:
    """OVMF's `<loader>` and `<nvram>` in `<os>` (and SMM for secure boot); nothing for
    SeaBIOS."""
    if firmware.loader is None:
        return
    loader = ET.SubElement(os_, "loader", readonly="yes", type="pflash")
    if firmware.secure_boot:
        loader.set("secure", "yes")
        ET.SubElement(features, "smm", state="on")
    loader.text = str(firmware.loader)
    ET.SubElement(os_, "nvram", template=str(firmware.nvram_template))
