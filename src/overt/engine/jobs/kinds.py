"""What a job does, as data (Ganeti's opcodes): one typed spec per kind of job.

A job's row keeps its kind's name (`Job.action`) and the spec's fields as JSON
(`Job.params`); `load` validates them back into the spec, so a handler never reads a
key that nothing sets. Each spec declares the locks its job holds, as (level, id)
pairs taken in the fixed order of `LOCK_LEVELS` (Ganeti's rule: two jobs never wait
for each other the other way round). How a kind runs and what it undoes when it fails
live apart, in `jobs.handlers` (the logical units).
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from overt.engine.db.tables import Job
from overt.engine.model.status import VmStatus

# Lock order: always data center, cluster, host, storage domain, VM, disk, template.
LOCK_LEVELS = ("data_center", "cluster", "host", "storage_domain", "vm", "disk", "template")

LockOn = tuple[str, uuid.UUID]


class JobSpec(BaseModel):
    """A kind of job and its arguments; subclasses name their kind."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClassVar[str]
    # How often a transient failure is retried before the job fails.
    max_attempts: ClassVar[int] = 5

    def locks(self) -> tuple[LockOn, ...]:
        """The objects this job locks from its submission to its end."""
        return ()

    def vm(self) -> uuid.UUID | None:
        """The VM the job is about (shown with the job, and its audit events)."""
        return None

    def host(self) -> uuid.UUID | None:
        """The host the job acts on, when it is known at submission."""
        return None


class VmJob(JobSpec):
    """A job on one VM, which it locks."""

    # The status in which the job leaves the VM, for a job that ends it: the monitor,
    # observing it, releases the VM in the same transaction (see `queue.release_on_end`).
    ends_as: ClassVar[VmStatus | None] = None
    vm_id: uuid.UUID

    def locks(self) -> tuple[LockOn, ...]:
        return (("vm", self.vm_id),)

    def vm(self) -> uuid.UUID | None:
        return self.vm_id


class StartVm(VmJob):
    """Run a VM (or resume a suspended one) on the host its submission reserved.

    The reservation is the VM recorded on `host_id` in a launching status, made under
    the host's row lock at submission: the host's memory counts the VM from then on,
    until the VM is up or the job fails and gives the room back."""

    kind: ClassVar[str] = "vm.start"
    # Seen up by the monitor, the VM is free at once: a user who sees it up may stop it.
    ends_as: ClassVar[VmStatus | None] = VmStatus.UP
    # None only in rows stored before placement moved to submission: the VM's own host.
    host_id: uuid.UUID | None = None
    # Made at the first attempt and kept so a retry sends the node the identical spec.
    vnc_password: str | None = None
    # cloud-init for this run: False leaves it out; a run-once initialization (it may hold
    # a password) is forgotten, like the console password, once the job has ended.
    use_cloud_init: bool | None = None
    initialization: dict[str, Any] | None = Field(None, repr=False)
    # Run once: the boot order and cdrom media of this run (None: the VM's own).
    boot: list[str] | None = None
    cdrom_given: bool = False
    cdrom_disk_id: uuid.UUID | None = None

    def host(self) -> uuid.UUID | None:
        return self.host_id


class StopVm(VmJob):
    """Power off at once; a suspended VM forgets its saved memory."""

    kind: ClassVar[str] = "vm.stop"
    ends_as: ClassVar[VmStatus | None] = VmStatus.DOWN
    reason: str = ""


class ShutdownVm(VmJob):
    """Ask the guest to shut down (ACPI); the node powers it off if it does not in time."""

    kind: ClassVar[str] = "vm.shutdown"
    ends_as: ClassVar[VmStatus | None] = VmStatus.DOWN
    reason: str = ""


class RebootVm(VmJob):
    kind: ClassVar[str] = "vm.reboot"


class SuspendVm(VmJob):
    """oVirt's suspend: the memory goes to the host's local storage and the VM stops."""

    kind: ClassVar[str] = "vm.suspend"
    ends_as: ClassVar[VmStatus | None] = VmStatus.SUSPENDED


class RemoveVm(VmJob):
    kind: ClassVar[str] = "vm.remove"
    detach_only: bool = False


class SetTicket(JobSpec):
    """A one-time console password on the VM's host. Locks nothing: it changes no state
    the engine keeps, and a console must open while other jobs act on the VM."""

    kind: ClassVar[str] = "vm.ticket"
    max_attempts: ClassVar[int] = 1
    vm_id: uuid.UUID
    host_id: uuid.UUID | None = None
    # Dropped from the stored spec as soon as the node has it.
    password: str | None = None
    expiry_s: int = 120

    def vm(self) -> uuid.UUID | None:
        return self.vm_id

    def host(self) -> uuid.UUID | None:
        return self.host_id


class CreateDisk(JobSpec):
    """Create a disk's image: empty, a thin copy of its backing disk, or a copy of a file
    on the host (`copy_from`, a template's import), which also locks the template."""

    kind: ClassVar[str] = "disk.create"
    disk_id: uuid.UUID
    copy_from: str | None = None
    template_id: uuid.UUID | None = None
    vm_id: uuid.UUID | None = None

    def locks(self) -> tuple[LockOn, ...]:
        template = (("template", self.template_id),) if self.template_id is not None else ()
        return (("disk", self.disk_id), *template)

    def vm(self) -> uuid.UUID | None:
        return self.vm_id


class RemoveDisk(JobSpec):
    kind: ClassVar[str] = "disk.remove"
    disk_id: uuid.UUID

    def locks(self) -> tuple[LockOn, ...]:
        return (("disk", self.disk_id),)


class DiskCopy(BaseModel):
    """One disk copied, flattened, into a new independent disk the service recorded."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    source: uuid.UUID
    target: uuid.UUID


class _CopyDisksJob(JobSpec):
    """Copies of disks into new ones, which are locked while they are made (a source VM is
    locked as a whole; a template's disks only read, so several clones share them)."""

    copies: tuple[DiskCopy, ...] = ()

    def _disk_locks(self) -> tuple[LockOn, ...]:
        return tuple(("disk", copy.target) for copy in self.copies)


class CreateTemplate(_CopyDisksJob):
    """oVirt's template from a VM: the down VM's disks copied (flattened) to the template's
    disks; the VM stays locked (it cannot start) and the template `locked` until done."""

    kind: ClassVar[str] = "template.create"
    max_attempts: ClassVar[int] = 3
    vm_id: uuid.UUID
    template_id: uuid.UUID
    seal: bool = False  # oVirt's sealed template: its boot disk's copy goes through virt-sysprep

    def locks(self) -> tuple[LockOn, ...]:
        return (("vm", self.vm_id), *self._disk_locks(), ("template", self.template_id))

    def vm(self) -> uuid.UUID | None:
        return self.vm_id


class CloneVm(_CopyDisksJob):
    """A new VM whose disks are independent copies of a VM's or a template's disks (oVirt's
    `clone` action and `POST /vms?clone=true`); the new VM stays locked until done."""

    kind: ClassVar[str] = "vm.clone"
    max_attempts: ClassVar[int] = 3
    vm_id: uuid.UUID
    source_vm_id: uuid.UUID | None = None
    template_id: uuid.UUID | None = None

    def locks(self) -> tuple[LockOn, ...]:
        source = (("vm", self.source_vm_id),) if self.source_vm_id is not None else ()
        return (*source, ("vm", self.vm_id), *self._disk_locks())

    def vm(self) -> uuid.UUID | None:
        return self.vm_id


class CopyDisk(JobSpec):
    """oVirt's disk `copy`: a new floating disk (recorded `locked` by the service) made a
    flattened copy of `source` (its snapshot chain, if any, read through: the disk as it
    is now); the source is `locked` meanwhile and the VMs it is attached to (down) too,
    so none starts writing to it."""

    kind: ClassVar[str] = "disk.copy"
    max_attempts: ClassVar[int] = 3
    disk_copy: DiskCopy
    vm_ids: tuple[uuid.UUID, ...] = ()

    def locks(self) -> tuple[LockOn, ...]:
        return (*(("vm", vm_id) for vm_id in self.vm_ids), ("disk", self.disk_copy.source),
                ("disk", self.disk_copy.target))


class MovedLayer(BaseModel):
    """A snapshot volume of a disk moved with its chain: where it is, where it goes."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    pk: int  # its SnapshotVolume row
    source_path: str
    target_path: str
    format: str = "cow"


class MoveDisk(JobSpec):
    """oVirt's disk `move`: the disk's volume copied to `target_path` on the target
    domain, the disk (same id, same attachments) switched to it, then the source volume
    removed. Both paths are chosen at submission, so a retry (or the engine that takes the
    job over after a crash) asks the nodes for the same volumes. With `live_vm_id` the disk
    is in use by that running VM (live storage migration): its QEMU mirrors the disk into
    the target (a block copy) and pivots to it; the VM is among `vm_ids`, locked, so it
    neither migrates nor stops by a user's action meanwhile. A disk with snapshots (its VM
    down) moves with its chain: each of `chain` (base first) copied over the one copied
    before it, the disk's own volume over the last; all rows switched in one commit."""

    kind: ClassVar[str] = "disk.move"
    max_attempts: ClassVar[int] = 3
    disk_id: uuid.UUID
    source_domain_id: uuid.UUID
    source_path: str
    target_domain_id: uuid.UUID
    target_path: str
    vm_ids: tuple[uuid.UUID, ...] = ()
    live_vm_id: uuid.UUID | None = None
    chain: tuple[MovedLayer, ...] = ()

    def locks(self) -> tuple[LockOn, ...]:
        return (*(("vm", vm_id) for vm_id in self.vm_ids), ("disk", self.disk_id))

    def vm(self) -> uuid.UUID | None:
        return self.live_vm_id


class MemoryVolumes(BaseModel):
    """Where a snapshot's memory goes: two raw volumes of a shared domain the submission
    allocated (oVirt's memory dump and memory metadata volumes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    storage_domain_id: uuid.UUID
    volume: str
    metadata_volume: str
    size_bytes: int


class CreateSnapshot(VmJob):
    """A snapshot of a VM, down or running: each disk's volume is frozen under a new qcow2
    volume whose name the submission chose (`overlays`: disk id -> path of the new volume
    in its domain), so a retry asks the node for the same volumes. With `memory` (a
    running VM), the guest's state is saved with the disks, to those volumes."""

    kind: ClassVar[str] = "vm.snapshot"
    max_attempts: ClassVar[int] = 3
    snapshot_id: uuid.UUID
    overlays: dict[str, str]
    memory: MemoryVolumes | None = None


class RemoveSnapshot(VmJob):
    """Merge each of a snapshot's volumes with the volume over it (a block commit, live on
    a running VM) and forget the snapshot. The database records each disk's new chain as
    soon as its merge is done, so a retry merges only what is left."""

    kind: ClassVar[str] = "vm.snapshot_remove"
    max_attempts: ClassVar[int] = 3
    snapshot_id: uuid.UUID


class RestoreSnapshot(VmJob):
    """Bring a down VM's disks back to a snapshot: each gets a new empty volume over the
    snapshot's (`overlays`, named at submission), and the volumes newer than the snapshot
    are dropped with their snapshots (oVirt's restore: preview and commit in one)."""

    kind: ClassVar[str] = "vm.snapshot_restore"
    max_attempts: ClassVar[int] = 3
    snapshot_id: uuid.UUID
    overlays: dict[str, str]
    # oVirt's restore_memory: the next start resumes the guest from the snapshot's memory.
    restore_memory: bool = False


class PreviewSnapshot(VmJob):
    """Let a down VM run from a snapshot: each disk gets a new volume over the snapshot's
    (`overlays`), and its volumes until then are kept under `preview_id` (oVirt's
    `preview` snapshot), for a commit to drop or an undo to bring back."""

    kind: ClassVar[str] = "vm.snapshot_preview"
    max_attempts: ClassVar[int] = 3
    snapshot_id: uuid.UUID
    preview_id: uuid.UUID
    overlays: dict[str, str]
    restore_memory: bool = False


class EndPreview(VmJob):
    """End a down VM's preview: `commit` keeps the previewed state (the volumes off the
    chain are deleted with their snapshots), otherwise the VM's volumes before the preview
    come back and the preview's are deleted (oVirt's `commitsnapshot` / `undosnapshot`)."""

    kind: ClassVar[str] = "vm.snapshot_end_preview"
    max_attempts: ClassVar[int] = 3
    snapshot_id: uuid.UUID
    commit: bool


class InstallHost(JobSpec):
    """Enroll a host by its address (or reconnect one enrolled before)."""

    kind: ClassVar[str] = "host.install"
    host_id: uuid.UUID

    def locks(self) -> tuple[LockOn, ...]:
        return (("host", self.host_id),)

    def host(self) -> uuid.UUID | None:
        return self.host_id


class RefreshHost(JobSpec):
    """Ask a host for its capabilities again. Locks nothing: it only reads the node."""

    kind: ClassVar[str] = "host.refresh"
    max_attempts: ClassVar[int] = 3
    host_id: uuid.UUID

    def host(self) -> uuid.UUID | None:
        return self.host_id


class AttachmentSnapshot(BaseModel):
    """One network attachment as it was before a `setupnetworks` (put back if it fails)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: uuid.UUID
    network_id: uuid.UUID
    nic_name: str
    boot_protocol: str = "none"
    address: str | None = None
    netmask: str | None = None
    gateway: str | None = None
    ipv6_boot_protocol: str = "none"
    ipv6_address: str | None = None
    ipv6_prefix: int | None = None
    ipv6_gateway: str | None = None
    applied: bool = False
    committed: bool = False


class BondSnapshot(BaseModel):
    """One bond as it was before a `setupnetworks`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    slaves: tuple[str, ...]
    options: dict[str, str] = {}


class SetupHostNetworks(JobSpec):
    """Make a host's node carry the networks attached to it (oVirt's `setupnetworks`).

    Locks nothing: it sends the node the whole set of attachments as they are when it
    runs, so a later setup supersedes an earlier one. Not retried: a half-applied
    change is the node's to roll back, not the engine's to send again."""

    kind: ClassVar[str] = "host.setup_networks"
    max_attempts: ClassVar[int] = 1
    host_id: uuid.UUID
    check_connectivity: bool = False
    connectivity_timeout_s: float = 120.0
    commit: bool = False
    # The host's attachments before the change: what the engine shows again if it fails.
    previous: tuple[AttachmentSnapshot, ...] = ()
    previous_bonds: tuple[BondSnapshot, ...] = ()
    # Whether the other hosts of an overlay this change adds or removes are set up again
    # afterwards (false for those follow-up jobs themselves).
    peers: bool = True

    def host(self) -> uuid.UUID | None:
        return self.host_id


class CommitHostNetworks(JobSpec):
    """Keep a host's applied networks across its restarts (oVirt's `commitnetconfig`)."""

    kind: ClassVar[str] = "host.commit_networks"
    max_attempts: ClassVar[int] = 3
    host_id: uuid.UUID

    def host(self) -> uuid.UUID | None:
        return self.host_id


class MigrateVm(VmJob):
    """Move a running VM to `host_id`, reserved at submission (the VM's `migration_host_id`)
    as a start reserves its host. The source's agent hands the VM to the destination's
    libvirtd; the VM's host changes when the destination reports it running. Not retried:
    a migration that failed is not sent again blindly, it leaves the VM on its source."""

    kind: ClassVar[str] = "vm.migrate"
    max_attempts: ClassVar[int] = 1
    # Seen up on its destination by the monitor, the VM is free at once.
    ends_as: ClassVar[VmStatus | None] = VmStatus.UP
    source_host_id: uuid.UUID
    host_id: uuid.UUID

    def host(self) -> uuid.UUID | None:
        return self.host_id


class CancelMigration(JobSpec):
    """Abort a VM's live migration on its source. Locks nothing: the migration's own job
    holds the VM, and fails (leaving the VM on its source) when its node gives up."""

    kind: ClassVar[str] = "vm.cancel_migration"
    max_attempts: ClassVar[int] = 1
    vm_id: uuid.UUID
    host_id: uuid.UUID

    def vm(self) -> uuid.UUID | None:
        return self.vm_id

    def host(self) -> uuid.UUID | None:
        return self.host_id


class ChangeVmNic(VmJob):
    """Plug, unplug or relink one NIC of a running VM on its host, as the service layer
    has recorded it (`linked`: the link state asked for a relink)."""

    kind: ClassVar[str] = "vm.nic"
    max_attempts: ClassVar[int] = 3
    nic_id: uuid.UUID
    op: Literal["plug", "unplug", "link"]
    linked: bool | None = None
    host_id: uuid.UUID | None = None

    def host(self) -> uuid.UUID | None:
        return self.host_id


class ChangeVmCdrom(VmJob):
    """Put the ISO disk the service layer recorded as the running VM's current cdrom media
    (`disk_id`; None: eject) into its drive on its host."""

    kind: ClassVar[str] = "vm.cdrom"
    max_attempts: ClassVar[int] = 3
    disk_id: uuid.UUID | None = None
    previous_disk_id: uuid.UUID | None = None
    host_id: uuid.UUID | None = None

    def host(self) -> uuid.UUID | None:
        return self.host_id


class FenceHost(JobSpec):
    """Ask a host's power management for its power status, or to start, stop or restart
    it, through its fence agents in order. Locks nothing: a fence must never wait for a job
    stuck on the host it fences; not retried (a power action is not repeated blindly)."""

    kind: ClassVar[str] = "host.fence"
    max_attempts: ClassVar[int] = 1
    host_id: uuid.UUID
    fence_type: Literal["status", "start", "stop", "restart"]

    def host(self) -> uuid.UUID | None:
        return self.host_id


class IscsiOnHost(JobSpec):
    """oVirt's iSCSI discovery, login and LUN list, done by a host through libiscsi:
    `discover` asks a portal for its targets; `login` lists a target's LUNs (which logs in,
    so a wrong password is refused) and the host remembers the login; `luns` lists the
    LUNs of `target`, or of every target the host logged in to; `read` reads the metadata
    area of LUN `lun` of `target` (or of the LUN whose SCSI id is `scsi_id`), which an
    import checks before it records anything. The API waits for it. The
    CHAP password is sealed here as everywhere. Locks nothing; not retried."""

    kind: ClassVar[str] = "host.iscsi"
    max_attempts: ClassVar[int] = 1
    host_id: uuid.UUID
    op: Literal["discover", "login", "luns", "read"]
    address: str | None = None
    port: int = 3260
    target: str | None = None
    lun: int | None = None
    scsi_id: str | None = None
    chap_username: str | None = None
    chap_password_sealed: str | None = None

    def host(self) -> uuid.UUID | None:
        return self.host_id


class DrainHost(JobSpec):
    """oVirt's maintenance of a host that runs VMs: the host is preparing for maintenance
    (nothing new is placed on it) while each VM is live-migrated away by a migration job
    of its own; then the host is in maintenance. A VM that cannot move fails the job,
    and the host serves as before: nothing is powered off. Not retried: the
    administrator asks again once the VM can move."""

    kind: ClassVar[str] = "host.maintenance"
    max_attempts: ClassVar[int] = 1
    host_id: uuid.UUID

    def locks(self) -> tuple[LockOn, ...]:
        return (("host", self.host_id),)

    def host(self) -> uuid.UUID | None:
        return self.host_id


class RecoverHost(JobSpec):
    """oVirt's treatment of a non responsive host: fence it when its cluster's fencing
    policy allows, and only with proof that its VMs are gone (`jobs.handlers.ha_proofs`)
    mark them down and restart the highly available ones on other hosts. Locks nothing
    (the host's own jobs may be stuck on it); not retried (a power action is not repeated
    blindly: the monitor submits it again if the host fails again)."""

    kind: ClassVar[str] = "host.recover"
    max_attempts: ClassVar[int] = 1
    host_id: uuid.UUID

    def host(self) -> uuid.UUID | None:
        return self.host_id


class _StorageDomainJob(JobSpec):
    """A job on one shared storage domain, which it locks until the domain is settled."""

    storage_domain_id: uuid.UUID

    def locks(self) -> tuple[LockOn, ...]:
        return (("storage_domain", self.storage_domain_id),)


class CreateStorageDomain(_StorageDomainJob):
    """Lay a new shared domain out on its storage (or read an existing one to import it),
    through `host_id`, a host up in the domain's data center."""

    kind: ClassVar[str] = "storage_domain.create"
    host_id: uuid.UUID | None = None
    import_domain: bool = False

    def host(self) -> uuid.UUID | None:
        return self.host_id


class AttachStorageDomain(_StorageDomainJob):
    """Record a data center in a shared domain's own metadata and make it active there."""

    kind: ClassVar[str] = "storage_domain.attach"
    data_center_id: uuid.UUID


class DetachStorageDomain(_StorageDomainJob):
    """Clear a domain's data center from its metadata, so another engine may import it."""

    kind: ClassVar[str] = "storage_domain.detach"


class LeftVolume(BaseModel):
    """A volume a failed job may have made and no chain records: removed by a follow-up
    job; `leaf`, the volume under it that is a leaf again once it is gone (NFS `.meta`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    storage_domain_id: uuid.UUID
    path: str
    leaf: str | None = None


class RemoveVolumes(JobSpec):
    """Remove from storage the volumes a job that failed for good may have left (its
    compensation runs in a database transaction and cannot call a node), then free their
    extents. Submitted in the transaction that records the failure; runs through any host
    that reaches each domain. Locks the VM the volumes were made for, unless it was
    running (`live`): QEMU may then hold them, and they go only once the VM is down."""

    kind: ClassVar[str] = "storage.remove_volumes"
    max_attempts: ClassVar[int] = 10
    volumes: tuple[LeftVolume, ...] = Field(min_length=1)
    failed_job_id: uuid.UUID
    reason: str
    vm_id: uuid.UUID | None = None
    live: bool = False
    # A failed memory snapshot: the VM's host, which may keep a staged copy of the state
    # it could not store (`vm.memory_staging_drop`), and the memory and metadata volumes
    # (of `volumes`) it was for.
    staged_on: uuid.UUID | None = None
    staged_memory: tuple[str, ...] = ()

    def locks(self) -> tuple[LockOn, ...]:
        return (("vm", self.vm_id),) if self.vm_id is not None and not self.live else ()

    def vm(self) -> uuid.UUID | None:
        return self.vm_id


KINDS: dict[str, type[JobSpec]] = {spec.kind: spec for spec in (
    StartVm, StopVm, ShutdownVm, RebootVm, SuspendVm, RemoveVm, SetTicket,
    CreateDisk, RemoveDisk, InstallHost, RefreshHost, SetupHostNetworks,
    CommitHostNetworks, CreateStorageDomain, AttachStorageDomain, DetachStorageDomain,
    ChangeVmNic, FenceHost, MigrateVm, CancelMigration, CreateTemplate, CloneVm,
    CreateSnapshot, RemoveSnapshot, RestoreSnapshot, PreviewSnapshot, EndPreview, DrainHost,
    RecoverHost, ChangeVmCdrom, RemoveVolumes, CopyDisk, MoveDisk, IscsiOnHost)}


class UnreadableJob(Exception):
    """A stored job whose kind or arguments this engine does not know."""


def load(job: Job) -> JobSpec:
    """The spec a job row stores, validated."""
    spec_type = KINDS.get(job.action)
    if spec_type is None:
        raise UnreadableJob(f"job {job.id} is of a kind this engine does not know "
                            f"({job.action!r})")
    try:
        return spec_type.model_validate(job.params or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}"
                             for e in exc.errors())
        raise UnreadableJob(f"job {job.id} ({job.action}) has arguments this engine cannot "
                            f"read: {problems}") from None


def payload(spec: JobSpec) -> dict[str, Any]:
    """What a job row stores of its spec (defaults left out, secrets only while set)."""
    return spec.model_dump(mode="json", exclude_none=True)


def ordered(locks: tuple[LockOn, ...]) -> list[LockOn]:
    """Locks in the order they are taken: by level, then by id."""
    return sorted(set(locks), key=lambda lock: (LOCK_LEVELS.index(lock[0]), str(lock[1])))
