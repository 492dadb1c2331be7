"""Which domain type really runs guests here: `kvm`, or `qemu` (software emulation).

Flags lie (a CPU without vmx/svm still offers /dev/kvm to a nested guest, and
libvirt's domain capabilities claim kvm), so the probe boots a tiny diskless
domain and waits for the firmware to reach its "no bootable device" message on
the serial console. Under broken KVM the firmware never gets there.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt

from overt.protocol.host import VirtMode

log = logging.getLogger(__name__)

FIRMWARE_DONE = ("No bootable device", "Boot failed")
PROBE_PREFIX = "overt-kvm-probe-"


def is_probe(domain_name: str) -> bool:
    """The probe's own short-lived domains are never reported as VMs."""
    return domain_name.startswith(PROBE_PREFIX)


def cpu_has_virtualization(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """vmx (Intel) or svm (AMD) among the CPU flags. Without them /dev/kvm may still exist
    (a nested guest), and even the firmware boots, but a kernel stops at its first
    privileged instruction: KVM is not usable."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    return any(set(line.split(":", 1)[1].split()) & {"vmx", "svm"}
               for line in text.splitlines() if line.startswith("flags"))


def probe_virt_mode(conn: libvirt.virConnect, scratch_dir: Path, *,
                    timeout_s: float = 5.0) -> VirtMode:
    """Boot a diskless `kvm` domain; `kvm` when its firmware runs, else `qemu`. Blocking."""
    if not cpu_has_virtualization():
        log.info("the CPU shows no vmx/svm flag; using software emulation (qemu)")
        return VirtMode.QEMU
    try:
        conn.getDomainCapabilities(None, None, None, "kvm", 0)
    except libvirt.libvirtError as exc:
        log.info("KVM is not offered by libvirt (%s); using software emulation (qemu)",
                 exc.get_error_message())
        return VirtMode.QEMU
    scratch_dir.mkdir(parents=True, exist_ok=True)
    scratch_dir.chmod(0o755)
    serial = scratch_dir / f"kvm-probe-{uuid.uuid4().hex[:8]}.log"
    try:
        domain = conn.createXML(_probe_xml(serial), 0)
    except libvirt.libvirtError as exc:
        log.info("a KVM domain does not start (%s); using software emulation (qemu)",
                 exc.get_error_message())
        return VirtMode.QEMU
    try:
        works = _firmware_finishes(domain, serial, timeout_s)
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            domain.destroy()
        serial.unlink(missing_ok=True)
    mode = VirtMode.KVM if works else VirtMode.QEMU
    log.info("KVM %s; domain type %s", "boots guests" if works else "does not boot guests",
             mode.value)
    return mode


def _firmware_finishes(domain: libvirt.virDomain, serial: Path, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state, _reason = domain.state()
        if state != libvirt.VIR_DOMAIN_RUNNING:
            return False  # paused by an emulation failure, or gone
        with contextlib.suppress(OSError):
            if any(text in serial.read_text(errors="replace") for text in FIRMWARE_DONE):
                return True
        time.sleep(0.1)
    return False


def _probe_xml(serial: Path) -> str:
    dom = ET.Element("domain", type="kvm")
    ET.SubElement(dom, "name").text = f"{PROBE_PREFIX}{uuid.uuid4().hex[:8]}"
    ET.SubElement(dom, "memory", unit="MiB").text = "32"
    ET.SubElement(dom, "vcpu").text = "1"
    os_ = ET.SubElement(dom, "os")
    ET.SubElement(os_, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(os_, "boot", dev="hd")
    ET.SubElement(os_, "bios", useserial="yes")
    devices = ET.SubElement(dom, "devices")
    chardev = ET.SubElement(devices, "serial", type="file")
    ET.SubElement(chardev, "source", path=str(serial))
    ET.SubElement(devices, "memballoon", model="none")
    return ET.tostring(dom, encoding="unicode")
