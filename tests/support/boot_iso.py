"""A bootable ISO image of the test guest (isolinux, El Torito no-emulation boot), built
with xorriso: what an installer ISO is to a VM booting from its cdrom."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from overt.lab.guest import build_guest_image

ISOLINUX = Path("/usr/lib/ISOLINUX/isolinux.bin")
LDLINUX = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")
# On the kernel's command line, which it prints on the serial console at boot (loglevel 6):
# proof that the guest came from this ISO and not from a disk.
CDROM_BOOT_ARG = "overt.boot=cdrom"


def build_boot_iso(out: Path) -> Path:
    """The test guest's kernel and initrd behind isolinux, as ISO 9660 in `out`."""
    for needed in (ISOLINUX, LDLINUX):
        if not needed.exists():
            raise RuntimeError(f"{needed} is missing: install the isolinux and syslinux-common "
                               "packages (scripts/setup does)")
    guest = build_guest_image()
    with tempfile.TemporaryDirectory(prefix="overt-iso-") as tmp:
        tree = Path(tmp)
        (tree / "isolinux").mkdir()
        (tree / "boot").mkdir()
        shutil.copyfile(ISOLINUX, tree / "isolinux" / "isolinux.bin")
        shutil.copyfile(LDLINUX, tree / "isolinux" / "ldlinux.c32")
        shutil.copyfile(guest.kernel, tree / "boot" / "vmlinuz")
        shutil.copyfile(guest.initrd, tree / "boot" / "initrd.img")
        (tree / "isolinux" / "isolinux.cfg").write_text(
            "DEFAULT overt\nPROMPT 0\nTIMEOUT 0\nLABEL overt\n    KERNEL /boot/vmlinuz\n"
            "    INITRD /boot/initrd.img\n    APPEND console=ttyS0,115200 panic=-1 loglevel=6 "
            f"consoleblank=0 {CDROM_BOOT_ARG}\n")
        subprocess.run(
            ["xorriso", "-as", "mkisofs", "-quiet", "-o", str(out), "-V", "OVERT_BOOT",
             "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat", "-no-emul-boot",
             "-boot-load-size", "4", "-boot-info-table", str(tree)],
            check=True, capture_output=True, text=True)
    out.chmod(0o644)
    return out
