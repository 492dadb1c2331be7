"""The test guest boots from its own disk images under libvirt (domain type qemu)."""

from __future__ import annotations

import contextlib
import gzip
import subprocess
import time
from pathlib import Path

import libvirt
import pytest

from overt.lab.guest import BOOT_MARKER, COUNTER_PREFIX, GuestImage, build_guest_image
from overt.lab.guest.domain import overlay_disk
from tests.support.domains import GuestDomain, wait_for_shutoff, wait_for_text

pytestmark = pytest.mark.vm


def _overlay(image: GuestImage, vm_dir: Path, fmt: str) -> Path:
    """A writable disk for one VM: a qcow2 overlay, or a copy of the raw image."""
    disk = vm_dir / f"disk.{fmt}"
    if fmt == "qcow2":
        overlay_disk(image.qcow2_disk, disk)
    else:
        disk.write_bytes(image.raw_disk.read_bytes())
    return disk


def test_images_are_cached(guest_image: GuestImage) -> None:
    again = build_guest_image()
    assert again.directory == guest_image.directory
    for path in (again.kernel, again.initrd, again.raw_disk, again.qcow2_disk):
        assert path.stat().st_size > 0


def test_initramfs_is_a_cpio_archive_the_cpio_tool_reads(guest_image: GuestImage) -> None:
    listing = subprocess.run(["cpio", "-it", "--quiet"],
                             input=gzip.decompress(guest_image.initrd.read_bytes()),
                             capture_output=True, check=True).stdout.decode().split()
    for member in ("init", "bin/busybox", "dev/console", "etc/inittab", "etc/keyboard", "etc/counter",
                   "etc/acpi/PWRF/00000080", "lib/modules/virtio_net.ko", "etc/nocloud",
                   "etc/command-port", "etc/nics",
                   "lib/modules/ata_piix.ko", "lib/modules/sr_mod.ko", "lib/modules/isofs.ko"):
        assert member in listing


def test_disk_image_is_bootable_mbr(guest_image: GuestImage) -> None:
    head = guest_image.raw_disk.read_bytes()[:512]
    assert head[510:512] == b"\x55\xaa"
    assert head[446] == 0x80  # the first partition is marked bootable
    info = subprocess.run(["qemu-img", "info", str(guest_image.qcow2_disk)],
                          capture_output=True, text=True, check=True).stdout
    assert "file format: qcow2" in info


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
def test_guest_boots_from_disk_and_prints_its_marker(
    local_libvirt: libvirt.virConnect, guest_image: GuestImage, vm_dir: Path, fmt: str
) -> None:
    spec = GuestDomain(disk=_overlay(guest_image, vm_dir, fmt), disk_format=fmt,
                       serial_log=vm_dir / "serial.log")
    domain = local_libvirt.createXML(spec.xml(), 0)
    try:
        wait_for_text(spec.serial_log, BOOT_MARKER, timeout=15)
        # then its counter, a line every 100 ms from 0, none missing
        wait_for_text(spec.serial_log, f"{COUNTER_PREFIX}6", timeout=15)
        counts = [int(line.removeprefix(COUNTER_PREFIX))
                  for line in spec.serial_log.read_text().splitlines()
                  if line.startswith(COUNTER_PREFIX) and line[len(COUNTER_PREFIX):].isdigit()]
        assert counts[:6] == list(range(6)), counts
    finally:
        if domain.isActive():
            domain.destroy()


def test_acpi_power_button_powers_the_guest_off(
    local_libvirt: libvirt.virConnect, guest_image: GuestImage, vm_dir: Path
) -> None:
    spec = GuestDomain(disk=_overlay(guest_image, vm_dir, "qcow2"),
                       serial_log=vm_dir / "serial.log")
    domain = local_libvirt.createXML(spec.xml(), 0)
    try:
        wait_for_text(spec.serial_log, BOOT_MARKER, timeout=15)
        # The marker comes a moment before the guest listens to the button, and a press
        # before that is lost (as on real hardware): press until it is heard.
        deadline = time.monotonic() + 60
        while "ACPI power button pressed" not in spec.serial_log.read_text():
            assert time.monotonic() < deadline, "the guest never heard the power button"
            domain.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
            with contextlib.suppress(AssertionError):
                wait_for_text(spec.serial_log, "ACPI power button pressed", timeout=2)
        wait_for_shutoff(domain, timeout=20)
    finally:
        try:
            if domain.isActive():
                domain.destroy()
        except libvirt.libvirtError:
            pass
