"""What clients may ask for, as plain data: the API and the web UI both build these."""

from __future__ import annotations

from dataclasses import dataclass, field

from overt.engine.model.initialization import Initialization
from overt.engine.model.migration_options import MigrationOptions
from overt.engine.queries.lookup import Ref


@dataclass
class LogicalUnitInput:
    """An iSCSI LUN as the client names it: portal, target and LUN number (`id`)."""

    id: str | None = None
    address: str | None = None
    port: int | None = None
    target: str | None = None
    lun_mapping: int | None = None  # the LUN number, when `id` is the LUN's SCSI id
    username: str | None = None  # CHAP
    password: str | None = field(default=None, repr=False)


@dataclass
class DiskInput:
    name: str | None = None
    description: str | None = None
    provisioned_size: int | None = None  # bytes
    format: str | None = None  # cow | raw
    sparse: bool | None = None
    storage_domain: Ref | None = None
    template_disk: Ref | None = None  # a thin copy of this disk
    content_type: str | None = None  # data | iso
    lun: LogicalUnitInput | None = None  # a direct LUN disk (oVirt's lun_storage)


@dataclass
class RunOnce:
    """What one start of a VM changes for that run only (oVirt's run once)."""

    boot: list[str] | None = None
    cdrom_given: bool = False
    cdrom_file: str | None = None  # an ISO disk's id; None with cdrom_given: empty drive


@dataclass
class DiskAttachmentInput:
    disk: DiskInput | None = None
    disk_ref: Ref | None = None  # attach an existing disk
    interface: str | None = None
    bootable: bool | None = None
    active: bool | None = None
    read_only: bool | None = None


@dataclass
class NicInput:
    name: str | None = None
    mac: str | None = None
    vnic_profile: Ref | None = None
    network: Ref | None = None  # the deprecated way; its default profile is used
    interface: str | None = None
    linked: bool | None = None
    plugged: bool | None = None


@dataclass
class VmInput:
    name: str | None = None
    description: str | None = None
    comment: str | None = None
    cluster: Ref | None = None
    template: Ref | None = None
    memory_bytes: int | None = None
    sockets: int | None = None
    cores: int | None = None
    threads: int | None = None
    os_type: str | None = None
    instance_type: Ref | None = None
    boot_devices: list[str] | None = None
    bios_type: str | None = None  # oVirt's bios.type, checked by the service
    initialization: Initialization | None = None  # cloud-init, checked already
    high_availability: bool | None = None
    lease: Ref | None = None  # the storage domain of the VM's lease
    lease_unset: bool = False  # `<lease/>` without a domain: remove the lease
    ha_priority: int | None = None  # oVirt's high_availability.priority: higher restarts first
    storage_error_resume_behaviour: str | None = None  # a `StorageErrorResume`, checked
    placement_hosts: list[Ref] | None = None  # None: as it is; []: any host of the cluster
    placement_affinity: str | None = None
    migration: MigrationOptions | None = None
    migration_downtime_ms: int | None = None  # -1: the policy's
    disk_attachments: list[DiskAttachmentInput] = field(default_factory=list)
    nics: list[NicInput] = field(default_factory=list)
