"""Commands the engine sends a node (request/reply). Each names the model of its result."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Protocol, TypeVar
from uuid import UUID

from pydantic import BaseModel, Field, field_validator

from overt.protocol.host import HostCapabilities, HostState, VmStatusReport
from overt.protocol.imageio import ImageExportStart, ImageExportStop, ImageTicket
from overt.protocol.migration import MigrationPolicy, MigrationProgress, VmMigrated
from overt.protocol.networks import HostCommitNetworks, HostSetupNetworks
from overt.protocol.storage import (
    ExtentCommit,
    ExtentFormat,
    IscsiDiscover,
    IscsiExtentTarget,
    IscsiLunList,
    IscsiLunRef,
    LunMetadataWrite,
    LunRead,
    NfsVolumeTarget,
    SharedVolumeCommit,
    SharedVolumeCreate,
    SharedVolumeDelete,
    SharedVolumeMetaUpdate,
    StorageDomainCreate,
    StorageDomainScan,
    StorageDomainUpdate,
    VolumeCopy,
    VolumeSeal,
    VolumeSealProgress,
)
from overt.protocol.storage_reach import StorageDomainsProbe
from overt.protocol.vm import (
    DiskFormat,
    DiskSource,
    IscsiSource,
    LeaseSpec,
    NfsSource,
    VmSpec,
    WireModel,
)
from overt.protocol.vm_cdroms import VmCdromChange
from overt.protocol.vm_nics import VmNicLink, VmNicPlug, VmNicUnplug


class Empty(WireModel):
    """The result of a command that has nothing to say but success."""


class VmTicket(WireModel):
    """Where and how to reach a VM's console after `vm.set_ticket`."""

    vnc_port: int
    expires_at: float  # unix time


class VolumeInfo(WireModel):
    path: str
    format: DiskFormat
    virtual_size: int
    actual_size: int
    backing: str | None = None


R_co = TypeVar("R_co", bound=BaseModel, covariant=True)


class Returns(Protocol[R_co]):
    """A command, seen by the type of its result (what `NodeClient.call` returns)."""

    @property
    def result(self) -> type[R_co]: ...


class _Command(WireModel):
    # Each command narrows this to its own result model, so a call is typed by it.
    result: ClassVar[type[BaseModel]] = Empty
    mutates: ClassVar[bool] = True  # False: safe to resend without an idempotency key


class _VmCommand(_Command):
    result: ClassVar[type[VmStatusReport]] = VmStatusReport
    vm_id: UUID


class HostCapabilitiesCommand(_Command):
    name: Literal["host.capabilities"] = "host.capabilities"
    result: ClassVar[type[HostCapabilities]] = HostCapabilities
    mutates: ClassVar[bool] = False


class HostStateCommand(_Command):
    """The node's full state now; the engine's resync after a gap or reconnect."""

    name: Literal["host.state"] = "host.state"
    result: ClassVar[type[HostState]] = HostState
    mutates: ClassVar[bool] = False


class VmDefine(_Command):
    """Define (or redefine) a persistent domain from the spec without starting it."""

    name: Literal["vm.define"] = "vm.define"
    result: ClassVar[type[VmStatusReport]] = VmStatusReport
    spec: VmSpec


class VmStart(_VmCommand):
    """Start the VM: from `spec` as a transient domain, or the defined domain if no spec;
    with `restore_from`, resume it from the memory image a `vm.save` wrote (then deleted)."""

    name: Literal["vm.start"] = "vm.start"
    spec: VmSpec | None = None
    paused: bool = False
    restore_from: str | None = Field(None, pattern=r"^/")
    # A memory snapshot's state to resume from (a raw volume of a shared domain, which
    # `vm.memory_snapshot` wrote): the node copies it to its own storage, resumes the
    # guest from it with `spec`'s domain XML (the disks' volumes of now, not the saved
    # ones), then deletes its copy. The volume stays: a snapshot may be restored again.
    memory_from: NfsSource | IscsiSource | None = Field(None, discriminator="kind")


class VmSave(_VmCommand):
    """Suspend to disk (oVirt's suspend): write the VM's memory to `path` and stop it."""

    name: Literal["vm.save"] = "vm.save"
    path: str = Field(pattern=r"^/")


class VmShutdown(_VmCommand):
    """ACPI power button, then destroy when the guest has not stopped after `timeout_s`."""

    name: Literal["vm.shutdown"] = "vm.shutdown"
    timeout_s: float = Field(120, gt=0, le=3600)
    force_after_timeout: bool = True


class VmDestroy(_VmCommand):
    name: Literal["vm.destroy"] = "vm.destroy"


class VmMigrate(_VmCommand):
    """Live-migrate the running VM to another node's libvirtd (`destination_uri`, as this
    node reaches it), QEMU's stream going to `migration_uri` (tcp://ADDRESS) when given.
    The reply is the VM's last state here with the migration's figures; the destination's
    own events report it there. `policy` defaults to a plain live migration."""

    name: Literal["vm.migrate"] = "vm.migrate"
    result: ClassVar[type[VmMigrated]] = VmMigrated
    destination_uri: str = Field(min_length=1, max_length=1024)
    migration_uri: str | None = Field(None, max_length=1024)
    # Where the VM's console listens on the destination (the engine reaches it there).
    display_address: str | None = Field(None, max_length=255)
    timeout_s: float = Field(600, gt=0, le=86_400)
    policy: MigrationPolicy = MigrationPolicy()
    # A leased VM: the source's keeper offers the lease under this token before the
    # migration starts and withdraws the offer if it fails (`vm.lease_take_over`).
    lease_handover: UUID | None = None


class VmLeaseTakeOver(_Command):
    """On a migration's destination: take over the VM's lease its source offered under
    `token`, without waiting out the lease timeout (the source consents and stops
    renewing once it sees the new holder)."""

    name: Literal["vm.lease_take_over"] = "vm.lease_take_over"
    result: ClassVar[type[Empty]] = Empty
    vm_id: UUID
    lease: LeaseSpec
    token: UUID


class VmPrepareIncoming(_Command):
    """On a migration's destination, before `vm.migrate`: define the iSCSI CHAP secrets
    the VM's disks name (`luns`, with their credentials), which libvirt looks up as the
    incoming VM starts there; they stay until it arrives or `vm.abandon_incoming`."""

    name: Literal["vm.prepare_incoming"] = "vm.prepare_incoming"
    result: ClassVar[type[Empty]] = Empty
    vm_id: UUID
    luns: tuple[IscsiLunRef, ...] = ()


class VmAbandonIncoming(_Command):
    """On a migration's destination whose migration failed: the VM will not come; the
    secrets `vm.prepare_incoming` defined go unless a VM there names them."""

    name: Literal["vm.abandon_incoming"] = "vm.abandon_incoming"
    result: ClassVar[type[Empty]] = Empty
    vm_id: UUID


class VmMigrationProgress(_Command):
    """How far the VM's outgoing migration is; never waits behind the migration."""

    name: Literal["vm.migration_progress"] = "vm.migration_progress"
    result: ClassVar[type[MigrationProgress]] = MigrationProgress
    mutates: ClassVar[bool] = False
    vm_id: UUID


class VmCancelMigration(_VmCommand):
    """Abort the VM's outgoing migration; it keeps running on this node."""

    name: Literal["vm.cancel_migration"] = "vm.cancel_migration"


class VmReboot(_VmCommand):
    name: Literal["vm.reboot"] = "vm.reboot"


class VmPause(_VmCommand):
    name: Literal["vm.pause"] = "vm.pause"


class VmResume(_VmCommand):
    name: Literal["vm.resume"] = "vm.resume"


class VmUndefine(_VmCommand):
    name: Literal["vm.undefine"] = "vm.undefine"


class VmStatus(_VmCommand):
    name: Literal["vm.status"] = "vm.status"
    mutates: ClassVar[bool] = False


class VmSetTicket(_Command):
    """Set a one-time VNC password on a running VM, valid until `expiry_s` from now."""

    name: Literal["vm.set_ticket"] = "vm.set_ticket"
    result: ClassVar[type[VmTicket]] = VmTicket
    vm_id: UUID
    password: str = Field(min_length=6, max_length=8, repr=False)
    expiry_s: int = Field(120, gt=0, le=86400)


class VolumeCreate(_Command):
    """Create a disk image in the node's storage (qemu-img); fails if it exists."""

    name: Literal["volume.create"] = "volume.create"
    result: ClassVar[type[VolumeInfo]] = VolumeInfo
    path: str = Field(pattern=r"^/")
    format: DiskFormat = DiskFormat.QCOW2
    size_bytes: int = Field(gt=0)
    backing: str | None = Field(None, pattern=r"^/")
    backing_format: DiskFormat | None = None
    copy_from: str | None = Field(None, pattern=r"^/")  # a full copy of this image instead


class VolumeDelete(_Command):
    name: Literal["volume.delete"] = "volume.delete"
    result: ClassVar[type[Empty]] = Empty
    path: str = Field(pattern=r"^/")


class VolumeInfoCommand(_Command):
    name: Literal["volume.info"] = "volume.info"
    result: ClassVar[type[VolumeInfo]] = VolumeInfo
    mutates: ClassVar[bool] = False
    path: str = Field(pattern=r"^/")


class VolumeCommit(_Command):
    """Merge `top` into its backing volume `base` (qemu-img commit) on a VM that is not
    running; `child`, the volume over `top` if any, is rebased onto `base`. `top` stays
    on storage for the engine to delete once it has recorded the new chain."""

    name: Literal["volume.commit"] = "volume.commit"
    result: ClassVar[type[VolumeInfo]] = VolumeInfo
    top: str = Field(pattern=r"^/")
    base: str = Field(pattern=r"^/")
    base_format: DiskFormat = DiskFormat.QCOW2
    child: str | None = Field(None, pattern=r"^/")


class DiskOverlay(WireModel):
    """One disk of a running VM to snapshot: its active volume and the new one over it."""

    active: str = Field(pattern=r"^/")
    overlay: str = Field(pattern=r"^/")
    # The overlay is a volume of a shared domain that the engine made beforehand (NFS,
    # with its metadata; iSCSI, an extent named by `storage.extent_location`): QEMU opens
    # it where the active volume is (same server or LUN, same client options) instead of
    # creating a local file.
    reuse: bool = False

    @field_validator("active", "overlay")
    @classmethod
    def _no_parent_steps(cls, value: str) -> str:
        if ".." in value.split("/"):
            raise ValueError("a volume path may not contain '..'")
        return value


class VmDiskSnapshot(_Command):
    """A disk-only external snapshot of a running VM, atomic over its disks: each disk's
    new `overlay` (qcow2, backed by its `active` volume) becomes the volume QEMU writes."""

    name: Literal["vm.disk_snapshot"] = "vm.disk_snapshot"
    result: ClassVar[type[Empty]] = Empty
    vm_id: UUID
    disks: tuple[DiskOverlay, ...] = Field(min_length=1)


class MemorySaved(WireModel):
    """What a memory snapshot cost the guest: the time it was paused (None when a retry
    finds the snapshot taken already) and the size of its saved state."""

    pause_ms: float | None = None
    total_ms: float | None = None
    memory_bytes: int = 0
    # False: the disks were switched (the snapshot stands) but the state could not be put
    # on its volumes; `problem` says why, and the node kept nothing.
    stored: bool = True
    problem: str = ""


class VmMemorySnapshot(_Command):
    """A snapshot of a running VM's disks (as `vm.disk_snapshot`) and of its RAM and
    device state, at the same instant: QEMU writes the state to this node's storage while
    the guest runs (libvirt's live external snapshot), pauses it only for the last pages
    and the switch of the disks, then the node copies the state (`memory`) and the
    domain's XML (`metadata`) to raw volumes of a shared domain, which the engine
    allocated, and deletes its own copies."""

    name: Literal["vm.memory_snapshot"] = "vm.memory_snapshot"
    result: ClassVar[type[MemorySaved]] = MemorySaved
    vm_id: UUID
    disks: tuple[DiskOverlay, ...] = Field(min_length=1)
    memory: NfsVolumeTarget | IscsiExtentTarget = Field(discriminator="kind")
    metadata: NfsVolumeTarget | IscsiExtentTarget = Field(discriminator="kind")


class VmMemoryStagingDrop(_Command):
    """Delete the node's staged copy of a memory snapshot's state and domain XML (what
    `vm.memory_snapshot` keeps for a retry when it could not copy them to their volumes):
    sent once the engine has given that snapshot up. Gone already is success."""

    name: Literal["vm.memory_staging_drop"] = "vm.memory_staging_drop"
    result: ClassVar[type[Empty]] = Empty
    vm_id: UUID
    memory: NfsVolumeTarget | IscsiExtentTarget = Field(discriminator="kind")
    metadata: NfsVolumeTarget | IscsiExtentTarget = Field(discriminator="kind")


class VmBlockCommit(_Command):
    """Live merge: commit `top` into `base` in the chain of the running VM's disk whose
    active volume is `disk`; when `top` is that active volume, QEMU then pivots to `base`.
    Returns once the chain QEMU uses no longer holds `top`."""

    name: Literal["vm.block_commit"] = "vm.block_commit"
    result: ClassVar[type[Empty]] = Empty
    vm_id: UUID
    disk: str = Field(pattern=r"^/")
    top: str = Field(pattern=r"^/")
    base: str = Field(pattern=r"^/")
    timeout_s: float = Field(600, gt=0, le=86_400)
    # The volumes are on a shared domain, named as QEMU's client reaches them (NFS: export
    # path + volume path; iSCSI: `storage.extent_location`), not files of this node.
    shared: bool = False


class BlockCopyState(WireModel):
    """Where one disk of a running VM stands in a live storage migration (a libvirt block
    copy): whether QEMU writes the destination volume yet, and the copy job if one runs
    (`ready`: the mirror is in sync, a pivot may end it)."""

    on_destination: bool
    job: Literal["none", "copying", "ready"] = "none"
    copied: int = 0  # bytes, as QEMU counts them (they may grow while the guest writes)
    total: int = 0


class VmBlockCopy(_Command):
    """Live storage migration of the running VM's disk `disk_id` (its device alias) to
    `destination`, a volume the engine made beforehand (`format`, the disk's size):
    `start` mirrors the disk there (already mirroring or moved: nothing more), `pivot`
    switches QEMU to it once the mirror is ready (moved already: success), `abort` ends
    the mirror and leaves the VM on its volume (no mirror: success). The reply is the state
    after the action."""

    name: Literal["vm.block_copy"] = "vm.block_copy"
    result: ClassVar[type[BlockCopyState]] = BlockCopyState
    vm_id: UUID
    disk_id: UUID
    destination: DiskSource
    format: DiskFormat = DiskFormat.QCOW2
    action: Literal["start", "pivot", "abort"]


class VmBlockCopyStatus(_Command):
    """The state of a live storage migration of the VM's disk `disk_id` to `destination`
    (asked again by an engine that took the job over after a crash)."""

    name: Literal["vm.block_copy_status"] = "vm.block_copy_status"
    result: ClassVar[type[BlockCopyState]] = BlockCopyState
    mutates: ClassVar[bool] = False
    vm_id: UUID
    disk_id: UUID
    destination: DiskSource


Command = Annotated[
    HostCapabilitiesCommand
    | HostStateCommand
    | VmDefine
    | VmStart
    | VmSave
    | VmShutdown
    | VmDestroy
    | VmMigrate
    | VmCancelMigration
    | VmMigrationProgress
    | VmLeaseTakeOver
    | VmPrepareIncoming
    | VmAbandonIncoming
    | VmReboot
    | VmPause
    | VmResume
    | VmUndefine
    | VmStatus
    | VmSetTicket
    | VolumeCreate
    | VolumeDelete
    | VolumeInfoCommand
    | VolumeCommit
    | VmDiskSnapshot
    | VmMemorySnapshot
    | VmMemoryStagingDrop
    | VmBlockCommit
    | VmBlockCopy
    | VmBlockCopyStatus
    | HostSetupNetworks
    | HostCommitNetworks
    | StorageDomainCreate
    | StorageDomainUpdate
    | StorageDomainScan
    | SharedVolumeCreate
    | SharedVolumeCommit
    | SharedVolumeDelete
    | SharedVolumeMetaUpdate
    | VolumeCopy
    | VolumeSeal
    | VolumeSealProgress
    | LunRead
    | LunMetadataWrite
    | ExtentFormat
    | ExtentCommit
    | StorageDomainsProbe
    | IscsiDiscover
    | IscsiLunList
    | ImageExportStart
    | ImageExportStop
    | ImageTicket
    | VmNicPlug
    | VmNicUnplug
    | VmNicLink
    | VmCdromChange,
    Field(discriminator="name"),
]
