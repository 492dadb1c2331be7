"""A libvirt domain of the test guest, for the lab and tests that boot it without the engine."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from overt.system.commands import run


@dataclass
class GuestDomain:
    """A transient test-guest domain: disk, optional NIC on a bridge, serial to a file."""

    disk: Path
    serial_log: Path
    disk_format: str = "qcow2"
    bridge: str | None = None
    mac: str | None = None
    name: str = field(default_factory=lambda: f"overt-test-{uuid.uuid4().hex[:8]}")
    memory_mib: int = 256

    def xml(self) -> str:
        dom = ET.Element("domain", type="qemu")
        ET.SubElement(dom, "name").text = self.name
        ET.SubElement(dom, "memory", unit="MiB").text = str(self.memory_mib)
        ET.SubElement(dom, "vcpu").text = "1"
        os_ = ET.SubElement(dom, "os")
        ET.SubElement(os_, "type", arch="x86_64", machine="pc").text = "hvm"
        ET.SubElement(os_, "boot", dev="hd")
        ET.SubElement(ET.SubElement(dom, "features"), "acpi")
        devices = ET.SubElement(dom, "devices")
        disk = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(disk, "driver", name="qemu", type=self.disk_format)
        ET.SubElement(disk, "source", file=str(self.disk))
        ET.SubElement(disk, "target", dev="vda", bus="virtio")
        if self.bridge:
            nic = ET.SubElement(devices, "interface", type="bridge")
            ET.SubElement(nic, "source", bridge=self.bridge)
            if self.mac:
                ET.SubElement(nic, "mac", address=self.mac)
            ET.SubElement(nic, "model", type="virtio")
        serial = ET.SubElement(devices, "serial", type="file")
        ET.SubElement(serial, "source", path=str(self.serial_log))
        return ET.tostring(dom, encoding="unicode")


def overlay_disk(base: Path, path: Path) -> Path:
    """A qcow2 overlay on the guest's image at `path`, so each VM writes its own disk."""
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(path)])
    return path
