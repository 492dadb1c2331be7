"""Building the test guest: an initramfs of busybox plus a bootable MBR/extlinux disk.

The guest prints BOOT_MARKER on its serial console once booted, powers off on an
ACPI power-button press, takes an address by DHCP on every NIC (NICs plugged while it
runs too, within a second), shows a heartbeat
line a second on its screen, prints a counter line (COUNTER_PREFIX and a number from 0)
every 100 ms on its serial console and echoes what is typed on its keyboard (typing
`busy` makes it rewrite 32 MiB of its memory in a loop, for migration benchmarks). When a cdrom
labelled `cidata` is attached, its own small NoCloud reader (files/nocloud; the test
guest's, not a product feature) applies the host name and the users' SSH keys and
prints them on the serial console. Images are cached by their inputs.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from overt.lab.guest import debian
from overt.lab.guest.cpio import Entry, write_archive
from overt.system.commands import run

BOOT_MARKER = "overt-test-guest: boot complete"
COUNTER_PREFIX = "overt-test-guest: count "

# virtio for disks and NICs, the ACPI button and evdev for the power button; order
# matters because the .deb carries no modules.dep.
GUEST_MODULES = (
    "virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
    "failover", "net_failover", "virtio_net", "virtio_blk", "button", "evdev",
)
# The cdrom and its file system, for the test guest's NoCloud reader (files/nocloud); loaded
# by that reader after the boot marker, so a guest without a cidata drive boots as fast.
CDROM_MODULES = ("scsi_common", "scsi_mod", "libata", "ata_piix", "cdrom", "sr_mod", "isofs")
DISK_SIZE_MIB = 64
PARTITION_START_MIB = 1
_BUILDER_VERSION = "4"  # 4: the keyboard's "write"; 3: the command port; 2: the NoCloud reader, cdrom modules


@dataclass(frozen=True)
class GuestImage:
    """Where a built test guest lies; every path is a ready, read-only artefact."""

    directory: Path

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    @property
    def raw_disk(self) -> Path:
        return self.directory / "disk.raw"

    @property
    def qcow2_disk(self) -> Path:
        return self.directory / "disk.qcow2"


def default_cache_dir() -> Path:
    """/var/cache/overt for root (QEMU, running as libvirt-qemu, must read the images)."""
    if os.environ.get("OVERT_CACHE_DIR"):
        return Path(os.environ["OVERT_CACHE_DIR"]) / "test-guest"
    if os.geteuid() == 0:
        return Path("/var/cache/overt/test-guest")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "overt" / "test-guest"


def _guest_file(name: str) -> bytes:
    return (resources.files("overt.lab.guest") / "files" / name).read_bytes()


def _cache_key(kernel_pkg: str) -> str:
    digest = hashlib.sha256(_BUILDER_VERSION.encode())
    for part in (kernel_pkg, debian.candidate_version(kernel_pkg),
                 debian.candidate_version(debian.BUSYBOX_PACKAGE)):
        digest.update(part.encode())
    for name in sorted(p.name for p in (resources.files("overt.lab.guest") / "files").iterdir()):
        digest.update(name.encode() + _guest_file(name))
    return f"{kernel_pkg.removeprefix('linux-image-')}-{digest.hexdigest()[:12]}"


def build_guest_image(cache_dir: Path | None = None) -> GuestImage:
    """Return the cached test guest, building it first when its inputs changed."""
    cache_dir = cache_dir or default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    kernel_pkg = debian.kernel_package()
    image = GuestImage(cache_dir / _cache_key(kernel_pkg))
    with _locked(cache_dir / ".lock"):
        if image.qcow2_disk.exists():
            return image
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".build-") as tmp:
            work = Path(tmp)
            staging = work / "image"
            staging.mkdir(mode=0o755)
            _build_into(staging, work / "debs", kernel_pkg)
            staging.rename(image.directory)
    return image


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _build_into(out: Path, debs: Path, kernel_pkg: str) -> None:
    kernel_tree = debian.download_and_unpack(kernel_pkg, debs)
    busybox_tree = debian.download_and_unpack(debian.BUSYBOX_PACKAGE, debs)
    shutil.copyfile(next((kernel_tree / "boot").glob("vmlinuz-*")), out / "vmlinuz")
    busybox = busybox_tree / "bin" / "busybox"
    applets = run([str(busybox), "--list"]).stdout.split()
    modules_dir = next((kernel_tree / "lib" / "modules").iterdir()) / "kernel"
    modules = {m: next(modules_dir.rglob(f"{m}.ko")).read_bytes()
               for m in GUEST_MODULES + CDROM_MODULES}
    (out / "initrd.img").write_bytes(_initramfs(busybox.read_bytes(), applets, modules))
    _make_disk(out)


def _initramfs(busybox: bytes, applets: list[str], modules: dict[str, bytes]) -> bytes:
    rcs = _guest_file("rcS").replace(b"@@BOOT_MARKER@@", BOOT_MARKER.encode())
    entries = [Entry.directory(d) for d in (
        "bin", "dev", "etc", "etc/acpi", "etc/acpi/PWRF", "lib", "lib/modules",
        "proc", "sys", "tmp", "run", "var", "root", "home")]
    entries += [
        Entry.char_device("dev/console", 5, 1),
        Entry.file("bin/busybox", busybox, 0o755),
        Entry.symlink("init", "/bin/busybox"),
        Entry.symlink("sbin", "bin"),
        Entry.file("etc/inittab", _guest_file("inittab")),
        Entry.file("etc/rcS", rcs, 0o755),
        Entry.file("etc/heartbeat", _guest_file("heartbeat"), 0o755),
        Entry.file("etc/nics", _guest_file("nics"), 0o755),
        Entry.file("etc/counter", _guest_file("counter"), 0o755),
        Entry.file("etc/keyboard", _guest_file("keyboard"), 0o755),
        Entry.file("etc/nocloud", _guest_file("nocloud"), 0o755),
        Entry.file("etc/command-port", _guest_file("command-port"), 0o755),
        Entry.file("etc/udhcpc.script", _guest_file("udhcpc.script"), 0o755),
        Entry.file("etc/acpi/PWRF/00000080", _guest_file("power-button"), 0o755),
        Entry.file("etc/modules", "\n".join(GUEST_MODULES).encode() + b"\n"),
        Entry.file("etc/hostname", b"overt-test-guest\n"),
        Entry.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
        Entry.file("etc/group", b"root:x:0:\n"),
        Entry.file("etc/shadow", b"root:*:20000:0:99999:7:::\n", 0o600),
    ]
    entries += [Entry.symlink(f"bin/{a}", "busybox") for a in applets if a != "busybox"]
    entries += [Entry.file(f"lib/modules/{m}.ko", data) for m, data in modules.items()]
    raw = io.BytesIO()
    write_archive(raw, entries)
    return gzip.compress(raw.getvalue(), mtime=0)


def _make_disk(out: Path) -> None:
    """An MBR disk with one bootable ext4 partition holding extlinux, kernel and initrd."""
    raw = out / "disk.raw"
    with raw.open("wb") as disk:
        disk.truncate(DISK_SIZE_MIB << 20)
    run(["sfdisk", "-q", str(raw)], input=f"start={PARTITION_START_MIB}MiB, type=83, bootable\n")
    offset = PARTITION_START_MIB << 20
    size = (DISK_SIZE_MIB << 20) - offset
    loop = run(["losetup", "--find", "--show", "--offset", str(offset),
                "--sizelimit", str(size), str(raw)]).stdout.strip()
    mountpoint = out.parent / "mnt"
    mountpoint.mkdir()
    try:
        run(["mkfs.ext4", "-q", "-F", "-L", "overt-guest", "-O", "^64bit,^metadata_csum", loop])
        run(["mount", loop, str(mountpoint)])
        try:
            boot = mountpoint / "boot"
            (boot / "extlinux").mkdir(parents=True)
            shutil.copyfile(out / "vmlinuz", boot / "vmlinuz")
            shutil.copyfile(out / "initrd.img", boot / "initrd.img")
            (boot / "extlinux" / "extlinux.conf").write_bytes(_guest_file("extlinux.conf"))
            run(["extlinux", "--install", str(boot / "extlinux")])
        finally:
            run(["umount", str(mountpoint)])
    finally:
        run(["losetup", "--detach", loop])
        mountpoint.rmdir()
    mbr = Path("/usr/lib/EXTLINUX/mbr.bin").read_bytes()
    with raw.open("r+b") as disk:
        disk.write(mbr[:440])
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out / "disk.qcow2")])
    for artefact in out.iterdir():
        artefact.chmod(0o644)
