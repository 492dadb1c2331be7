"""Network boot on a managed network: dnsmasq's own TFTP server hands PXE clients a boot
entry (a kernel, its initramfs and their command line) through an iPXE script.

QEMU's NIC boot ROMs are iPXE (Debian's ipxe-qemu): they ask DHCP with option 175 and get
`boot.ipxe` at once. Any other PXE client gets iPXE itself first (from Debian's ipxe), which
asks again and gets the script: `undionly.kpxe` for BIOS clients, `ipxe.efi` for UEFI ones
(DHCP option 93, client architecture 7 or 9: x86-64 UEFI, as OVMF's own PXE sends).
The TFTP root is the engine's own directory; what it holds is only what the plan names.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

SCRIPT = "boot.ipxe"
KERNEL = "vmlinuz"
INITRD = "initrd.img"
CHAIN = "undionly.kpxe"
CHAIN_SOURCE = Path("/usr/lib/ipxe/undionly.kpxe")
EFI_CHAIN = "ipxe.efi"
EFI_CHAIN_SOURCE = Path("/usr/lib/ipxe/ipxe.efi")
IPXE_TAG = "ipxe"  # the dnsmasq tag of a client that is already iPXE (DHCP option 175)
EFI_TAG = "efi64"  # the tag of an x86-64 UEFI client (RFC 4578 architectures 7 and 9)
EFI_ARCHITECTURES = (7, 9)
# The test guest, talking on its first serial port; `overt.boot=network` tells whoever
# reads the console how it booted.
DEFAULT_CMDLINE = "console=ttyS0,115200 panic=-1 loglevel=6 consoleblank=0 overt.boot=network"
DEFAULT_HTTP_PORT = 8480


@dataclass(frozen=True)
class BootEntry:
    """What a machine booting from the network runs: `None` paths mean the test guest's."""

    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str = DEFAULT_CMDLINE
    http_port: int | None = DEFAULT_HTTP_PORT  # None: the files over TFTP only (slower)


def boot_base(entry: BootEntry) -> str:
    """Where iPXE fetches the boot files: the engine's HTTP server on the address that gave
    the script (`${next-server}`), or else TFTP, relative to the script."""
    return f"http://${{next-server}}:{entry.http_port}/" if entry.http_port else ""


def ipxe_script(entry: BootEntry, *, profiles: bool = False) -> str:
    """The iPXE script. With provisioning profiles, a machine first chains to its MAC's
    script, then to the default profile's; the entry is what any other machine boots.

    `initrd=` names the initramfs for the kernel's EFI stub: under UEFI, iPXE hands the
    kernel the images it loaded by name, and without it the kernel finds no initramfs
    (a BIOS boot ignores the argument)."""
    chain = ("chain mac-${netX/mac:hexhyp}.ipxe || goto nomac\n:nomac\n"
             "chain default.ipxe || goto nodefault\n:nodefault\n") if profiles else ""
    base = boot_base(entry)
    return (f"#!ipxe\necho Overt network boot\n{chain}"
            f"kernel {base}{KERNEL} initrd={INITRD} {entry.cmdline}\n"
            f"initrd {base}{INITRD}\nboot\n")


def dnsmasq_lines(tftp_root: Path) -> list[str]:
    """dnsmasq's TFTP server and the boot file each kind of client gets."""
    return [
        "enable-tftp", f"tftp-root={tftp_root}",
        f"dhcp-match=set:{IPXE_TAG},175",
        # iPXE's no-proxydhcp: there is no ProxyDHCP server to wait for (it waits seconds)
        "dhcp-option=encap:175,176,1b",
        *(f"dhcp-match=set:{EFI_TAG},option:client-arch,{arch}" for arch in EFI_ARCHITECTURES),
        # disjoint tag sets: which line dnsmasq tries first does not matter
        f"dhcp-boot=tag:{IPXE_TAG},{SCRIPT}",
        f"dhcp-boot=tag:!{IPXE_TAG},tag:{EFI_TAG},{EFI_CHAIN}",
        f"dhcp-boot=tag:!{IPXE_TAG},tag:!{EFI_TAG},{CHAIN}",
    ]


def _copy_if_changed(source: Path, target: Path) -> None:
    try:
        same = target.stat().st_size == source.stat().st_size and \
            target.stat().st_mtime_ns == source.stat().st_mtime_ns
    except FileNotFoundError:
        same = False
    if not same:
        tmp = target.with_name(target.name + ".tmp")
        shutil.copy2(source, tmp)
        tmp.replace(target)


def prepare_tftp_root(root: Path, kernel: Path, initrd: Path, entry: BootEntry, *,
                      profiles: bool = False) -> None:
    """Fill the TFTP root: the kernel, the initramfs, the script, and iPXE (BIOS and UEFI
    builds) to chain into when Debian's ipxe is installed (without it only iPXE clients
    boot)."""
    root.mkdir(parents=True, exist_ok=True, mode=0o755)
    _copy_if_changed(kernel, root / KERNEL)
    _copy_if_changed(initrd, root / INITRD)
    for source, name in ((CHAIN_SOURCE, CHAIN), (EFI_CHAIN_SOURCE, EFI_CHAIN)):
        if source.exists():
            _copy_if_changed(source, root / name)
    script = root / SCRIPT
    write_if_changed(script, ipxe_script(entry, profiles=profiles))


def write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(path)
    return True


def copy_if_changed(source: Path, target: Path) -> None:
    _copy_if_changed(source, target)
