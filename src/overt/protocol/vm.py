"""What a VM is, as the engine tells a node: the VmSpec and its devices."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class WireModel(BaseModel):
    """Base of every wire model: immutable, and unknown fields are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class BootDevice(StrEnum):
    HD = "hd"
    NETWORK = "network"
    CDROM = "cdrom"


class BiosType(StrEnum):
    """oVirt's `bios.type`: the machine type and its firmware (SeaBIOS, or OVMF for UEFI)."""

    I440FX_SEA_BIOS = "i440fx_sea_bios"
    Q35_SEA_BIOS = "q35_sea_bios"
    Q35_OVMF = "q35_ovmf"
    Q35_SECURE_BOOT = "q35_secure_boot"


class DiskFormat(StrEnum):
    RAW = "raw"
    QCOW2 = "qcow2"


class DiskBus(StrEnum):
    VIRTIO = "virtio"
    SCSI = "scsi"  # virtio-scsi
    SATA = "sata"


class CpuTopology(WireModel):
    sockets: int = Field(1, ge=1, le=64)
    cores: int = Field(1, ge=1, le=64)
    threads: int = Field(1, ge=1, le=8)

    @property
    def vcpus(self) -> int:
        return self.sockets * self.cores * self.threads


class FileSource(WireModel):
    """A disk image that is a file the node can open (local storage)."""

    kind: Literal["file"] = "file"
    path: str = Field(min_length=2, pattern=r"^/")


class NfsSource(WireModel):
    """A disk image on an NFS export, opened by QEMU's own NFS client."""

    kind: Literal["nfs"] = "nfs"
    server: str
    path: str = Field(pattern=r"^/")  # export path + image path, e.g. /export/sd/img.qcow2


class ChapAuth(WireModel):
    """CHAP credentials an iSCSI target asks of its initiators; the password never shows
    in a repr (so neither in a log line nor a traceback)."""

    username: str = Field(min_length=1, max_length=255)
    password: str = Field(min_length=1, max_length=255, repr=False)


class IscsiSource(WireModel):
    """A LUN of an iSCSI target, opened by QEMU's own iSCSI client."""

    kind: Literal["iscsi"] = "iscsi"
    portal: str  # host or host:port
    target: str  # IQN
    lun: int = Field(ge=0)
    chap: ChapAuth | None = None
    # A volume of an iSCSI domain is an extent of the LUN (QEMU's raw offset/size).
    offset: int | None = Field(None, ge=0)
    size: int | None = Field(None, gt=0)


DiskSource = Annotated[FileSource | NfsSource | IscsiSource, Field(discriminator="kind")]


class BackingLayer(WireModel):
    """One volume of a disk's backing chain."""

    source: DiskSource
    format: DiskFormat = DiskFormat.QCOW2


class DiskSpec(WireModel):
    id: UUID
    source: DiskSource
    format: DiskFormat = DiskFormat.QCOW2
    bus: DiskBus = DiskBus.VIRTIO
    readonly: bool = False
    bootable: bool = False
    serial: str | None = Field(None, max_length=20)  # shown to the guest (disk id prefix)
    # A thin disk on shared storage: the image under it (a template's disk), given to
    # libvirt rather than probed, which it cannot do over QEMU's own NFS client.
    backing: DiskSource | None = None
    backing_format: DiskFormat = DiskFormat.QCOW2
    # A disk with snapshots on shared storage: the volumes under `source`, nearest first,
    # given to libvirt for the same reason; `backing` (a template's disk) lies under them.
    chain: tuple[BackingLayer, ...] = ()


class LeaseSpec(WireModel):
    """The VM's lease: slot `slot` of the `xleases` area of a storage domain: on NFS
    (`server`:`export`, domain directory `domain_id`) a file of the domain's `dom_md`, on
    iSCSI (`lun`; `server` is its portal) a window of the LUN after its metadata area. A
    node starts the VM only after its lease keeper has acquired it."""

    domain_id: UUID
    server: str = Field(min_length=1, max_length=255)
    export: str = Field("/", pattern=r"^/")
    lun: IscsiSource | None = None
    slot: int = Field(ge=0, lt=2000)
    io_timeout_s: float = Field(10.0, gt=0, le=60)


class NicSpec(WireModel):
    id: UUID
    name: str = "nic1"
    mac: str
    bridge: str = Field(min_length=1, max_length=15)  # the host bridge of the logical network
    model: Literal["virtio", "e1000", "rtl8139"] = "virtio"
    linked: bool = True
    vlan: int | None = Field(default=None, ge=0, le=4094)  # set: an OVS access port, tagged

    @field_validator("mac")
    @classmethod
    def _mac(cls, value: str) -> str:
        value = value.lower()
        if not _MAC_RE.match(value):
            raise ValueError(f"{value!r} is not a MAC address like 56:6f:1a:2b:3c:4d")
        return value


class GraphicsSpec(WireModel):
    """VNC for the console; the password is set per start and by console tickets."""

    type: Literal["vnc"] = "vnc"
    listen: str = "0.0.0.0"  # noqa: S104 - the engine's console proxy reaches it over management
    password: str | None = Field(None, max_length=8, repr=False)  # VNC passwords are 8 bytes


class ConfigDriveSpec(WireModel):
    """cloud-init NoCloud files, which the node writes to an ISO labelled `cidata` and
    attaches as a read-only cdrom. The user-data may hold a password: never in a repr."""

    user_data: str = Field(max_length=1024 * 1024, repr=False)
    meta_data: str = Field(max_length=16 * 1024)
    network_config: str | None = Field(None, max_length=64 * 1024)


class CdromSpec(WireModel):
    """The VM's cdrom drive and the ISO image in it (`source` None: an empty drive). The
    drive always exists, so media can be changed while the VM runs."""

    source: DiskSource | None = None
    bus: Literal["ide", "sata"] = "ide"  # IDE on i440fx; SATA where the machine has no IDE


class VmSpec(WireModel):
    """Everything a node needs to run a VM. The engine's database is its source of truth."""

    id: UUID
    name: str
    memory_mib: int = Field(ge=16, le=4 * 1024 * 1024)
    cpu: CpuTopology = CpuTopology()
    bios: BiosType = BiosType.I440FX_SEA_BIOS
    boot: tuple[BootDevice, ...] = (BootDevice.HD,)
    disks: tuple[DiskSpec, ...] = ()
    nics: tuple[NicSpec, ...] = ()
    graphics: GraphicsSpec | None = GraphicsSpec()
    serial_log: str | None = Field(None, pattern=r"^/")  # serial console to this file
    config_drive: ConfigDriveSpec | None = None  # cloud-init data for this run
    cdrom: CdromSpec | None = None  # the VM's own cdrom (not the config drive)
    spec_version: int = Field(1, ge=1)  # bumped by the engine on every change
    lease: LeaseSpec | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(
                f"{value!r} is not a valid VM name: 1-64 letters, digits, '.', '_' or '-'")
        return value

    @model_validator(mode="after")
    def _unique_devices(self) -> VmSpec:
        macs = [nic.mac for nic in self.nics]
        if len(set(macs)) != len(macs):
            raise ValueError("two NICs of the VM have the same MAC address")
        disks = [disk.id for disk in self.disks]
        if len(set(disks)) != len(disks):
            raise ValueError("the same disk is attached twice")
        return self
