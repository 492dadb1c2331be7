"""Commands on shared storage domains (NFS): the engine decides names and sizes, nodes
execute them against the export through libnfs and QEMU's NFS driver."""

from __future__ import annotations

import re
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, Field, field_validator

from overt.protocol.vm import ChapAuth, DiskFormat, FileSource, IscsiSource, NfsSource, WireModel

# An NFS server as a host name or address, and an export path: no URL syntax inside.
SERVER = r"^[A-Za-z0-9]([A-Za-z0-9.:\-]{0,253})$"
EXPORT = r"^/[A-Za-z0-9._/\-]*$"


class NfsExportRef(WireModel):
    server: str = Field(pattern=SERVER)
    export: str = Field(pattern=EXPORT)


class DomainInfo(WireModel):
    """A domain as its metadata on storage describes it."""

    id: UUID
    metadata: dict[str, str]
    total_bytes: int
    free_bytes: int


class StoredVolume(WireModel):
    """A volume found on storage, with its `.meta` (oVirt's keys) and qemu-img's view."""

    image_id: UUID
    volume_id: UUID
    metadata: dict[str, str]
    format: DiskFormat
    virtual_size: int
    actual_size: int


class DomainContents(WireModel):
    domain: DomainInfo
    volumes: list[StoredVolume]


class DomainList(WireModel):
    domains: list[DomainContents]


class Removed(WireModel):
    """A removal that found nothing left to remove also ends here."""


class SharedVolumeInfo(WireModel):
    format: DiskFormat
    virtual_size: int
    actual_size: int


class _StorageCommand(WireModel):
    result: ClassVar[type[BaseModel]] = DomainInfo
    mutates: ClassVar[bool] = True
    storage: NfsExportRef


class StorageDomainCreate(_StorageCommand):
    """Lay out a new domain on the export (dom_md/, images/); a domain of that id which
    is already there is accepted, any other is not touched."""

    name: Literal["storage.domain_create"] = "storage.domain_create"
    result: ClassVar[type[DomainInfo]] = DomainInfo
    domain_id: UUID
    metadata: dict[str, str]


class StorageDomainUpdate(_StorageCommand):
    """Rewrite some keys of a domain's metadata (its data center, its description)."""

    name: Literal["storage.domain_update"] = "storage.domain_update"
    result: ClassVar[type[DomainInfo]] = DomainInfo
    domain_id: UUID
    changes: dict[str, str]


class StorageDomainScan(_StorageCommand):
    """The domains on an export with their volumes (for import)."""

    name: Literal["storage.domain_scan"] = "storage.domain_scan"
    result: ClassVar[type[DomainList]] = DomainList
    mutates: ClassVar[bool] = False


class SharedVolumeCreate(_StorageCommand):
    """`SD/images/IMG/VOL` with its `VOL.meta`, made with qemu-img over nfs://."""

    name: Literal["storage.volume_create"] = "storage.volume_create"
    result: ClassVar[type[SharedVolumeInfo]] = SharedVolumeInfo
    domain_id: UUID
    image_id: UUID
    volume_id: UUID
    format: DiskFormat = DiskFormat.QCOW2
    size_bytes: int = Field(gt=0)
    sparse: bool = True
    metadata: dict[str, str] = Field(default_factory=dict)
    # A thin volume: a qcow2 layer over a volume of the same domain (a template's disk),
    # named relative to it as oVirt does (`../IMG/VOL`), so the export may move.
    backing_image_id: UUID | None = None
    backing_volume_id: UUID | None = None
    backing_format: DiskFormat = DiskFormat.QCOW2


class NfsVolumeTarget(WireModel):
    """A new volume of an NFS domain, with the keys its `.meta` gets besides oVirt's own."""

    kind: Literal["nfs_volume"] = "nfs_volume"
    storage: NfsExportRef
    domain_id: UUID
    image_id: UUID
    volume_id: UUID
    metadata: dict[str, str] = Field(default_factory=dict)
    # The volume's size when it is larger than what is written into it: a snapshot's
    # memory volume is as large as the engine allocated it (oVirt's too), whatever the
    # state's size, so storage and the engine say the same size.
    size_bytes: int = Field(0, ge=0)


class SharedVolumeCommit(_StorageCommand):
    """Merge volume `top` of an NFS domain's image into `base`, its backing volume
    (qemu-img commit over nfs://); `child`, the volume over `top` if any, is rebased onto
    `base`, and the `.meta` files follow (the child's PUUID, the base's VOLTYPE). `top`
    stays for the engine to delete once it has recorded the new chain: safe to repeat."""

    name: Literal["storage.volume_commit"] = "storage.volume_commit"
    result: ClassVar[type[SharedVolumeInfo]] = SharedVolumeInfo
    domain_id: UUID
    image_id: UUID
    top_id: UUID
    base_id: UUID
    base_format: DiskFormat = DiskFormat.QCOW2
    child_id: UUID | None = None


class SharedVolumeMetaUpdate(_StorageCommand):
    """Change keys of a volume's `.meta` (after a live merge, which QEMU did on the
    images: the next volume's PUUID, or the base's VOLTYPE once it is the leaf again)."""

    name: Literal["storage.volume_meta_update"] = "storage.volume_meta_update"
    result: ClassVar[type[Removed]] = Removed
    domain_id: UUID
    image_id: UUID
    volume_id: UUID
    changes: dict[str, str] = Field(min_length=1)

    @field_validator("changes")
    @classmethod
    def _known_keys(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = set(value) - LIVE_MERGE_KEYS
        if unknown:
            raise ValueError(f"keys {sorted(unknown)} may not be changed this way")
        return value


LIVE_MERGE_KEYS = frozenset({"PUUID", "VOLTYPE"})


class SharedVolumeDelete(_StorageCommand):
    name: Literal["storage.volume_delete"] = "storage.volume_delete"
    result: ClassVar[type[Removed]] = Removed
    domain_id: UUID
    image_id: UUID
    volume_id: UUID


IQN = r"^iqn\.[0-9]{4}-[0-9]{2}\.[A-Za-z0-9.\-]+(:[A-Za-z0-9.:\-]+)?$"
METADATA_AREA = 1 << 20  # the start of an iSCSI domain's LUN holds its metadata
# Then its lease areas (as an NFS domain's dom_md/ids and dom_md/xleases), 1 MiB each;
# volumes (extents) come after them.
LEASE_AREA_SIZE = 1 << 20
LEASE_AREAS = {"ids": METADATA_AREA, "xleases": METADATA_AREA + LEASE_AREA_SIZE}
DOMAIN_AREA = METADATA_AREA + 2 * LEASE_AREA_SIZE


class IscsiLunRef(WireModel):
    portal: str = Field(pattern=SERVER)  # host or host:port
    target: str = Field(pattern=IQN)
    lun: int = Field(ge=0, le=16383)
    chap: ChapAuth | None = None


class ExtentRef(WireModel):
    """A volume of an iSCSI domain: an extent of its LUN and the image format in it."""

    offset: int = Field(ge=DOMAIN_AREA)
    size: int = Field(gt=0)
    format: DiskFormat = DiskFormat.QCOW2


def extent_location(target: str, lun: int, offset: int, size: int) -> str:
    """An iSCSI volume as a running VM's commands name it, `/IQN/LUN/OFFSET/SIZE`: the
    node finds it in the live XML by its source (`IQN/LUN`) and slice, and builds a new
    overlay's network disk from it."""
    return f"/{target}/{lun}/{offset}/{size}"


def parse_extent_location(location: str) -> tuple[str, int, int, int] | None:
    """(target, LUN, offset, size) of an `extent_location`, None for any other path."""
    parts = location.split("/")
    if len(parts) != 5 or parts[0] or not all(p.isdigit() for p in parts[2:]):
        return None
    if re.match(IQN, parts[1]) is None:
        return None
    return parts[1], int(parts[2]), int(parts[3]), int(parts[4])


class IscsiExtentTarget(WireModel):
    """A new volume of an iSCSI domain: an extent of its LUN, the engine's allocation."""

    kind: Literal["iscsi_extent"] = "iscsi_extent"
    lun: IscsiLunRef
    offset: int = Field(ge=DOMAIN_AREA)
    size: int = Field(gt=0)


class CopyBacking(WireModel):
    """The volume a copied layer goes over, on the copy's target domain (made before):
    an NFS volume of the target's image (`volume_id`), an extent of the target's LUN
    (`extent`), or a file of the node's storage (`path`)."""

    format: DiskFormat = DiskFormat.QCOW2
    volume_id: UUID | None = None
    extent: ExtentRef | None = None
    path: str | None = Field(None, pattern=r"^/")


class VolumeCopy(WireModel):
    """A full, flattened copy of an image (its whole backing chain read through) into a
    new image: a file of the node's storage or a volume of an NFS domain (qemu-img
    convert). A target left half-written by an earlier try is written again. With
    `backing`, one layer of a chain: only what the source's own volume holds is written
    (`qemu-img convert -B`), into a qcow2 target over `backing` (a disk moved with its
    snapshots, layer by layer)."""

    name: Literal["volume.copy"] = "volume.copy"
    result: ClassVar[type[SharedVolumeInfo]] = SharedVolumeInfo
    mutates: ClassVar[bool] = True
    source: FileSource | NfsSource | IscsiSource = Field(discriminator="kind")
    target: FileSource | NfsVolumeTarget | IscsiExtentTarget = Field(discriminator="kind")
    format: DiskFormat = DiskFormat.QCOW2
    size_bytes: int = Field(gt=0)
    sparse: bool = True
    backing: CopyBacking | None = None


class SealReport(WireModel):
    operations: list[str]  # what virt-sysprep said it did, in its words
    seconds: float


class VolumeSeal(WireModel):
    """oVirt's sealing of a template's volume: `virt-sysprep` takes away what makes a
    Linux guest one machine (machine-id, SSH host keys, logs, cloud-init's state...), so
    each VM made from the template gets an identity of its own. A shared domain's volume
    is reached through `qemu-nbd` (the node has no NFS or iSCSI mount)."""

    name: Literal["volume.seal"] = "volume.seal"
    result: ClassVar[type[SealReport]] = SealReport
    mutates: ClassVar[bool] = True
    volume: FileSource | NfsSource | IscsiSource = Field(discriminator="kind")
    format: DiskFormat = DiskFormat.QCOW2
    timeout_s: float = Field(default=1800, gt=0)


class SealProgress(WireModel):
    running: bool  # a seal of that volume is running on this node
    stage: str = ""  # "starting", "examining the guest", or the operation being performed
    operations_done: int = 0
    percent: int = 0


class VolumeSealProgress(WireModel):
    """How far a running seal of the volume is (virt-sysprep's own lines), for its step."""

    name: Literal["volume.seal_progress"] = "volume.seal_progress"
    result: ClassVar[type[SealProgress]] = SealProgress
    mutates: ClassVar[bool] = False
    volume: FileSource | NfsSource | IscsiSource = Field(discriminator="kind")


class LunContents(WireModel):
    size_bytes: int
    metadata: str  # the metadata area's text (up to its end marker), empty when blank


class LunRead(WireModel):
    """The LUN's size and its metadata area."""

    name: Literal["storage.lun_read"] = "storage.lun_read"
    result: ClassVar[type[LunContents]] = LunContents
    mutates: ClassVar[bool] = False
    lun: IscsiLunRef


class LunMetadataWrite(WireModel):
    """Replace the LUN's metadata area (the engine renders all of it)."""

    name: Literal["storage.lun_metadata_write"] = "storage.lun_metadata_write"
    result: ClassVar[type[LunContents]] = LunContents
    mutates: ClassVar[bool] = True
    lun: IscsiLunRef
    metadata: str = Field(max_length=METADATA_AREA - 1)
    # A new domain: its lease areas are zeroed (all slots free), whatever the LUN held.
    clear_leases: bool = False


class ExtentFormat(WireModel):
    """Make an extent of the LUN an empty volume: a qcow2 header, or zeros at its start."""

    name: Literal["storage.extent_format"] = "storage.extent_format"
    result: ClassVar[type[SharedVolumeInfo]] = SharedVolumeInfo
    mutates: ClassVar[bool] = True
    lun: IscsiLunRef
    offset: int = Field(ge=DOMAIN_AREA)
    size: int = Field(gt=0)
    format: DiskFormat = DiskFormat.QCOW2
    virtual_size: int = Field(gt=0)
    # A thin volume: a qcow2 layer over another extent of the same LUN (a template's
    # disk), which its header names as its backing (QEMU's json: image options).
    backing: ExtentRef | None = None


class ExtentCommit(WireModel):
    """Merge the qcow2 volume on extent `top` into its backing, extent `base` (a snapshot's
    removal on a down VM); `child`, the qcow2 volume over `top`, is rebased onto `base`."""

    name: Literal["storage.extent_commit"] = "storage.extent_commit"
    result: ClassVar[type[SharedVolumeInfo]] = SharedVolumeInfo
    mutates: ClassVar[bool] = True
    lun: IscsiLunRef
    top: ExtentRef
    base: ExtentRef
    child: ExtentRef | None = None


StorageCommand = (StorageDomainCreate | StorageDomainUpdate | StorageDomainScan
                  | SharedVolumeCreate | SharedVolumeCommit | SharedVolumeDelete
                  | SharedVolumeMetaUpdate)
LunCommand = LunRead | LunMetadataWrite | ExtentFormat | ExtentCommit


class DiscoveredTarget(WireModel):
    """A target a portal names in a SendTargets discovery, with one of its portals."""

    target: str
    address: str
    port: int
    portal: str  # as the target said it: "ADDRESS:PORT,TPGT"


class DiscoveredTargets(WireModel):
    targets: list[DiscoveredTarget]


class IscsiDiscover(WireModel):
    """oVirt's iscsidiscover: the targets a portal offers (a SendTargets discovery
    session through libiscsi; CHAP when the portal asks for it)."""

    name: Literal["storage.iscsi_discover"] = "storage.iscsi_discover"
    result: ClassVar[type[DiscoveredTargets]] = DiscoveredTargets
    mutates: ClassVar[bool] = False
    portal: str = Field(pattern=SERVER)  # host or host:port
    chap: ChapAuth | None = None


class IscsiLunInfo(WireModel):
    """One LUN of a target as a SCSI inquiry describes it."""

    lun: int
    scsi_id: str  # the WWID as udev's scsi_id (and so oVirt) writes it: "36..." for NAA 6
    size_bytes: int
    serial: str = ""
    vendor: str = ""
    product: str = ""


class IscsiLuns(WireModel):
    luns: list[IscsiLunInfo]


class IscsiLunList(WireModel):
    """The disk LUNs of a target (its LUN 0 controller and other device types left out);
    a login through libiscsi, so a wrong CHAP password is refused here."""

    name: Literal["storage.iscsi_luns"] = "storage.iscsi_luns"
    result: ClassVar[type[IscsiLuns]] = IscsiLuns
    mutates: ClassVar[bool] = False
    portal: str = Field(pattern=SERVER)
    target: str = Field(pattern=IQN)
    chap: ChapAuth | None = None


IscsiCommand = IscsiDiscover | IscsiLunList
