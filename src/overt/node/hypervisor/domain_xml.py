"""Domain XML from a `VmSpec`, built with ElementTree, and Overt's metadata read back.

Overt's own facts about a VM live in the domain's `<metadata>` element, in the
namespace `METADATA_NS`, so a restarted agent knows its VMs without a database.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from overt.node.hypervisor.firmware import FIRMWARE, add_firmware
from overt.node.storage.chap import secret_id
from overt.protocol.host import VirtMode
from overt.protocol.vm import (
    BootDevice,
    CdromSpec,
    DiskBus,
    DiskFormat,
    DiskSpec,
    FileSource,
    GraphicsSpec,
    IscsiSource,
    NfsSource,
    NicSpec,
    VmSpec,
)

METADATA_NS = "https://overt.dev/xmlns/vm/1"
METADATA_PREFIX = "overt"
CONFIG_DRIVE_ALIAS = "ua-config-drive"  # the cloud-init cdrom's libvirt alias
CDROM_ALIAS = "ua-cdrom"  # the VM's own cdrom drive (ISO images)
# IDE on i440fx: the config drive is the secondary master (hdc), the VM's cdrom the
# secondary slave (hdd), so both coexist with any disk; SATA buses take the first free unit.
_CDROM_TARGET = {"ide": "hdd", "sata": "sdz"}

_DISK_PREFIX = {DiskBus.VIRTIO: "vd", DiskBus.SCSI: "sd", DiskBus.SATA: "sd"}


@dataclass(frozen=True)
class OvertMetadata:
    """What the agent records in a domain about the VM it made it from."""

    vm_id: uuid.UUID
    spec_version: int
    job: str | None = None  # the idempotency key of the command that defined or started it

    def element(self) -> ET.Element:
        root = ET.Element(f"{{{METADATA_NS}}}vm")
        ET.SubElement(root, f"{{{METADATA_NS}}}id").text = str(self.vm_id)
        ET.SubElement(root, f"{{{METADATA_NS}}}spec-version").text = str(self.spec_version)
        if self.job is not None:
            ET.SubElement(root, f"{{{METADATA_NS}}}job").text = self.job
        return root

    def xml(self) -> str:
        """The metadata element alone, as `virDomainSetMetadata` takes it."""
        return _serialize(self.element())

    @classmethod
    def parse(cls, xml: str) -> OvertMetadata | None:
        """Read the metadata from a whole domain XML or from the element alone."""
        root = parse_libvirt_xml(xml)
        element = root if root.tag == f"{{{METADATA_NS}}}vm" else root.find(
            f"metadata/{{{METADATA_NS}}}vm")
        if element is None:
            return None
        try:
            vm_id = uuid.UUID(element.findtext(f"{{{METADATA_NS}}}id", ""))
            version = int(element.findtext(f"{{{METADATA_NS}}}spec-version", "1"))
        except ValueError:
            return None
        return cls(vm_id, version, element.findtext(f"{{{METADATA_NS}}}job"))


def domain_xml(spec: VmSpec, virt_mode: VirtMode, metadata: OvertMetadata, *,
               config_drive: Path | None = None,
               ovs_bridges: frozenset[str] = frozenset()) -> str:
    """The libvirt domain XML of `spec` (domain type = `virt_mode`), with the VM's
    cloud-init `config_drive` image as a read-only cdrom when it has one; NICs on
    `ovs_bridges` (untagged networks on a bond) are OVS ports, as tagged ones always are."""
    dom = ET.Element("domain", type=virt_mode.value)
    ET.SubElement(dom, "name").text = spec.name
    ET.SubElement(dom, "uuid").text = str(spec.id)
    ET.SubElement(dom, "metadata").append(metadata.element())
    ET.SubElement(dom, "memory", unit="MiB").text = str(spec.memory_mib)
    ET.SubElement(dom, "currentMemory", unit="MiB").text = str(spec.memory_mib)
    ET.SubElement(dom, "vcpu", placement="static").text = str(spec.cpu.vcpus)
    cpu = ET.SubElement(dom, "cpu")
    if virt_mode is VirtMode.KVM:
        cpu.set("mode", "host-passthrough")
    ET.SubElement(cpu, "topology", sockets=str(spec.cpu.sockets), dies="1",
                  cores=str(spec.cpu.cores), threads=str(spec.cpu.threads))
    firmware = FIRMWARE[spec.bios]
    os_ = ET.SubElement(dom, "os")
    ET.SubElement(os_, "type", arch="x86_64", machine=firmware.machine).text = "hvm"
    features = ET.SubElement(dom, "features")
    ET.SubElement(features, "acpi")
    ET.SubElement(features, "apic")
    add_firmware(os_, features, firmware)
    ET.SubElement(dom, "clock", offset="utc")
    ET.SubElement(dom, "on_poweroff").text = "destroy"
    ET.SubElement(dom, "on_reboot").text = "restart"
    ET.SubElement(dom, "on_crash").text = "destroy"
    devices = ET.SubElement(dom, "devices")
    _add_disks(devices, spec.disks)
    if config_drive is not None:
        devices.append(_config_drive(config_drive, ide=firmware.has_ide))
    if spec.cdrom is not None:
        devices.append(_cdrom(spec.cdrom if firmware.has_ide
                              else spec.cdrom.model_copy(update={"bus": "sata"})))
    for nic in spec.nics:
        devices.append(_nic(nic, ovs=nic.bridge in ovs_bridges))
    _set_boot_order(devices, spec)
    _add_console(devices, spec.serial_log)
    if spec.graphics is not None:
        devices.append(_graphics(spec.graphics))
        ET.SubElement(ET.SubElement(devices, "video"), "model", type="vga")
    ET.SubElement(devices, "memballoon", model="virtio")
    return _serialize(dom)


def _set_boot_order(devices: ET.Element, spec: VmSpec) -> None:
    """Per-device boot order (libvirt then tells the firmware to try only these, in this
    order): `hd` is the bootable disk (else the first), `network` the first NIC, `cdrom`
    the VM's cdroms. The config drive is a cdrom nobody boots from: it never gets one."""
    disks = devices.findall("disk[@device='disk']")
    boot_disk = next((d for d, s in zip(disks, spec.disks, strict=True) if s.bootable),
                     disks[0] if disks else None)
    candidates = {
        BootDevice.HD: [boot_disk] if boot_disk is not None else [],
        BootDevice.NETWORK: devices.findall("interface")[:1],
        BootDevice.CDROM: [d for d in devices.findall("disk[@device='cdrom']")
                           if d.find(f"alias[@name='{CONFIG_DRIVE_ALIAS}']") is None],
    }
    order = 0
    for device in dict.fromkeys(spec.boot):
        for element in candidates[device]:
            order += 1
            boot = ET.Element("boot", order=str(order))
            element.insert(_boot_index(element), boot)


def _boot_index(element: ET.Element) -> int:
    """libvirt accepts <boot> anywhere in the device; keep it before the alias."""
    children = list(element)
    for index, child in enumerate(children):
        if child.tag == "alias":
            return index
    return len(children)


def _config_drive(path: Path, *, ide: bool = True) -> ET.Element:
    """The cloud-init NoCloud drive: an IDE cdrom (every guest kernel reads it), read-only;
    SATA on machines without IDE (q35)."""
    element = ET.Element("disk", type="file", device="cdrom")
    ET.SubElement(element, "driver", name="qemu", type="raw")
    ET.SubElement(element, "source", file=str(path))
    ET.SubElement(element, "target", dev="hdc" if ide else "sdy", bus="ide" if ide else "sata")
    ET.SubElement(element, "readonly")
    ET.SubElement(element, "alias", name=CONFIG_DRIVE_ALIAS)
    return element


def _cdrom(cdrom: CdromSpec) -> ET.Element:
    """The VM's cdrom drive, read-only; with no source it is an empty tray (media can be
    inserted later with libvirt's update-device)."""
    network = cdrom.source is not None and not isinstance(cdrom.source, FileSource)
    element = ET.Element("disk", type="network" if network else "file", device="cdrom")
    ET.SubElement(element, "driver", name="qemu", type="raw")
    if cdrom.source is not None:
        _source(element, cdrom.source)
    ET.SubElement(element, "target", dev=_CDROM_TARGET[cdrom.bus], bus=cdrom.bus)
    ET.SubElement(element, "readonly")
    ET.SubElement(element, "alias", name=CDROM_ALIAS)
    return element


def cdrom_xml(cdrom: CdromSpec) -> str:
    """The cdrom's <disk> element, as libvirt's update-device takes it to change media."""
    return _serialize(_cdrom(cdrom))


def _graphics(graphics: GraphicsSpec) -> ET.Element:
    """VNC on an automatic port; its password is set per start (and by console tickets)."""
    attrs = {"type": graphics.type, "autoport": "yes", "port": "-1"}
    if graphics.password is not None:
        attrs["passwd"] = graphics.password
    element = ET.Element("graphics", attrs)
    ET.SubElement(element, "listen", type="address", address=graphics.listen)
    return element


def _add_disks(devices: ET.Element, disks: tuple[DiskSpec, ...]) -> None:
    used: dict[str, int] = {}
    if any(disk.bus is DiskBus.SCSI for disk in disks):
        ET.SubElement(devices, "controller", type="scsi", index="0", model="virtio-scsi")
    for disk in disks:
        prefix = _DISK_PREFIX[disk.bus]
        index = used.get(prefix, 0)
        used[prefix] = index + 1
        devices.append(_disk(disk, prefix + _drive_letters(index)))


def _drive_letters(index: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa, as libvirt names drives."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return letters


def _disk(disk: DiskSpec, target: str) -> ET.Element:
    source = disk.source
    element = ET.Element("disk", type="file" if isinstance(source, FileSource) else "network",
                         device="disk")
    # A read or write error pauses the VM (libvirt's "paused, I/O error") instead of
    # reaching the guest, as oVirt's disks do: a guest told its disk failed may remount
    # read-only or lose the write; a paused one goes on where it was once resumed.
    driver = ET.SubElement(element, "driver", name="qemu", type=disk.format.value,
                           error_policy="stop")
    if not isinstance(source, FileSource):
        # Shared storage bypasses the host's page cache (as oVirt's disks do): the VM's
        # writes are on the storage when the VM moves to another host, so a live migration
        # is safe (libvirt refuses it otherwise).
        driver.set("cache", "none")
    _source(element, source)
    layers = [(layer.source, layer.format) for layer in disk.chain]
    if disk.backing is not None:
        layers.append((disk.backing, disk.backing_format))
    parent = element
    for source_of_layer, fmt in layers:
        parent = ET.SubElement(parent, "backingStore", type="file" if isinstance(
            source_of_layer, FileSource) else "network")
        ET.SubElement(parent, "format", type=fmt.value)
        _source(parent, source_of_layer)
    if layers:
        ET.SubElement(parent, "backingStore")  # the bottom volume has none
    ET.SubElement(element, "target", dev=target, bus=disk.bus.value)
    if disk.serial is not None:
        ET.SubElement(element, "serial").text = disk.serial
    if disk.readonly:
        ET.SubElement(element, "readonly")
    ET.SubElement(element, "alias", name=f"ua-{disk.id}")
    return element


def mirror_xml(source: FileSource | NfsSource | IscsiSource, fmt: DiskFormat) -> str:
    """The destination `<disk>` of a block copy (live storage migration): the volume as a
    VM's disk reaches it (`_source`: NFS with its identity, an iSCSI extent as a slice of
    the LUN under the format driver, CHAP by secret), with the disk's format; a whole
    volume (no backing chain: the mirror is flattened, as oVirt's is)."""
    element = ET.Element("disk", type="file" if isinstance(source, FileSource) else "network",
                         device="disk")
    ET.SubElement(element, "driver", name="qemu", type=fmt.value)
    _source(element, source)
    # The volume has nothing under it: said, so libvirt does not probe it for a chain
    # (it cannot read a volume through QEMU's NFS client).
    ET.SubElement(element, "backingStore")
    return _serialize(element)


def _source(element: ET.Element, source: FileSource | NfsSource | IscsiSource) -> None:
    if isinstance(source, FileSource):
        ET.SubElement(element, "source", file=source.path)
    elif isinstance(source, NfsSource):
        src = ET.SubElement(element, "source", protocol="nfs", name=source.path)
        ET.SubElement(src, "host", name=source.server)
        # QEMU's NFS client speaks as root so that root-made 0600 images stay readable.
        ET.SubElement(src, "identity", user="root", group="root")
    elif isinstance(source, IscsiSource):
        host, _, port = source.portal.partition(":")
        src = ET.SubElement(element, "source", protocol="iscsi",
                            name=f"{source.target}/{source.lun}")
        ET.SubElement(src, "host", name=host, port=port or "3260")
        if source.chap is not None:  # the password is in a libvirt secret (libvirt_secrets)
            auth = ET.SubElement(src, "auth", username=source.chap.username)
            ET.SubElement(auth, "secret", type="iscsi", usage=secret_id(source.target))
        if source.offset is not None and source.size is not None:
            slices = ET.SubElement(src, "slices")
            ET.SubElement(slices, "slice", type="storage", offset=str(source.offset),
                          size=str(source.size))


def _nic(nic: NicSpec, *, ovs: bool = False) -> ET.Element:
    """`ovs`: the untagged network's bridge is an OVS one here (a fake bridge on VLAN 0
    above a bond), so the port is an OVS port too, carried untagged."""
    element = ET.Element("interface", type="bridge")
    ET.SubElement(element, "mac", address=nic.mac)
    ET.SubElement(element, "source", bridge=nic.bridge)
    ovs = ovs or nic.vlan is not None
    if ovs:  # the network's OVS bridge; libvirt makes the port an access port
        ET.SubElement(element, "virtualport", type="openvswitch")
    if nic.vlan is not None:
        ET.SubElement(ET.SubElement(element, "vlan"), "tag", id=str(nic.vlan))
    ET.SubElement(element, "model", type=nic.model)
    if ovs and nic.model == "virtio":
        # The OVS userspace datapath reads the tap through a packet socket, which loses the
        # "checksum still to do" mark of offloaded frames: the guest must checksum its
        # own TCP and UDP, or they arrive broken (ICMP and DHCP's raw frames would not show).
        ET.SubElement(ET.SubElement(element, "driver"), "host", csum="off")
    ET.SubElement(element, "link", state="up" if nic.linked else "down")
    ET.SubElement(element, "alias", name=f"ua-{nic.id}")
    return element


def nic_xml(nic: NicSpec, *, ovs: bool = False) -> str:
    """One NIC's <interface> element, as hot-plugged into a running domain."""
    return _serialize(_nic(nic, ovs=ovs))


def _add_console(devices: ET.Element, serial_log: str | None) -> None:
    if serial_log is None:
        serial = ET.SubElement(devices, "serial", type="pty")
    else:
        # Appended to, not truncated: a VM migrating in opens the same log while its source
        # still writes to it, and the log keeps what the guest wrote on every node.
        serial = ET.SubElement(devices, "serial", type="file")
        ET.SubElement(serial, "source", path=serial_log, append="on")
    ET.SubElement(serial, "target", port="0")


def parse_libvirt_xml(xml: str) -> ET.Element:
    """Parse XML that libvirtd produced (trusted: it comes from the node's own daemon)."""
    return ET.fromstring(xml)  # noqa: S314 - libvirtd's output, not a stranger's


def vnc_port(xml: str) -> int | None:
    """The VNC port of a running domain's live XML, if it has one."""
    graphics = parse_libvirt_xml(xml).find("devices/graphics[@type='vnc']")
    if graphics is None:
        return None
    port = int(graphics.get("port", "-1"))
    return port if port > 0 else None


def _serialize(element: ET.Element) -> str:
    ET.register_namespace(METADATA_PREFIX, METADATA_NS)
    ET.indent(element)
    return ET.tostring(element, encoding="unicode")


def with_display_address(xml: str, address: str) -> str:
    """The domain's XML with its consoles listening on `address` (a migrating VM's
    destination: the source's address does not exist there)."""
    root = parse_libvirt_xml(xml)
    for graphics in root.findall("devices/graphics"):
        if graphics.get("listen") is not None:
            graphics.set("listen", address)
        for listen in graphics.findall("listen"):
            if listen.get("type") == "address":
                listen.set("address", address)
    return ET.tostring(root, encoding="unicode")
