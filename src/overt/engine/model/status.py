"""Status values with oVirt v4's names and wire values, so the API needs no translation."""

from __future__ import annotations

from enum import StrEnum


class VmStatus(StrEnum):
    DOWN = "down"
    IMAGE_LOCKED = "image_locked"
    MIGRATING = "migrating"
    NOT_RESPONDING = "not_responding"
    PAUSED = "paused"
    POWERING_DOWN = "powering_down"
    POWERING_UP = "powering_up"
    REBOOT_IN_PROGRESS = "reboot_in_progress"
    RESTORING_STATE = "restoring_state"
    SAVING_STATE = "saving_state"
    SUSPENDED = "suspended"
    UNASSIGNED = "unassigned"
    UNKNOWN = "unknown"
    UP = "up"
    WAIT_FOR_LAUNCH = "wait_for_launch"


class HostStatus(StrEnum):
    CONNECTING = "connecting"
    DOWN = "down"
    ERROR = "error"
    INITIALIZING = "initializing"
    INSTALL_FAILED = "install_failed"
    INSTALLING = "installing"
    KDUMPING = "kdumping"  # crashed, its kdump kernel sends fence_kdump messages
    MAINTENANCE = "maintenance"
    NON_OPERATIONAL = "non_operational"
    NON_RESPONSIVE = "non_responsive"
    PENDING_APPROVAL = "pending_approval"
    PREPARING_FOR_MAINTENANCE = "preparing_for_maintenance"
    REBOOT = "reboot"
    UNASSIGNED = "unassigned"
    UP = "up"


class DataCenterStatus(StrEnum):
    CONTEND = "contend"
    MAINTENANCE = "maintenance"
    NOT_OPERATIONAL = "not_operational"
    PROBLEMATIC = "problematic"
    UNINITIALIZED = "uninitialized"
    UP = "up"


class StorageDomainStatus(StrEnum):
    ACTIVATING = "activating"
    ACTIVE = "active"
    DETACHING = "detaching"
    INACTIVE = "inactive"
    LOCKED = "locked"
    MAINTENANCE = "maintenance"
    MIXED = "mixed"
    PREPARING_FOR_MAINTENANCE = "preparing_for_maintenance"
    UNATTACHED = "unattached"
    UNKNOWN = "unknown"


class StorageType(StrEnum):
    LOCALFS = "localfs"
    NFS = "nfs"
    ISCSI = "iscsi"


class StorageDomainType(StrEnum):
    DATA = "data"
    ISO = "iso"
    EXPORT = "export"


class DiskStatus(StrEnum):
    ILLEGAL = "illegal"
    LOCKED = "locked"
    OK = "ok"


class DiskFormat(StrEnum):
    COW = "cow"  # qcow2
    RAW = "raw"


class DiskInterface(StrEnum):
    IDE = "ide"
    SATA = "sata"
    SPAPR_VSCSI = "spapr_vscsi"
    VIRTIO = "virtio"
    VIRTIO_SCSI = "virtio_scsi"


class NicInterface(StrEnum):
    E1000 = "e1000"
    RTL8139 = "rtl8139"
    VIRTIO = "virtio"


class TemplateStatus(StrEnum):
    ILLEGAL = "illegal"
    LOCKED = "locked"
    OK = "ok"


class JobStatus(StrEnum):
    """oVirt's job (and step) status values."""

    ABORTED = "aborted"
    FAILED = "failed"
    FINISHED = "finished"
    STARTED = "started"
    UNKNOWN = "unknown"


class StepType(StrEnum):
    EXECUTING = "executing"
    FINALIZING = "finalizing"
    VALIDATING = "validating"


class LogSeverity(StrEnum):
    ALERT = "alert"
    ERROR = "error"
    NORMAL = "normal"
    WARNING = "warning"


class NetworkUsage(StrEnum):
    DEFAULT_ROUTE = "default_route"
    DISPLAY = "display"
    GLUSTER = "gluster"
    MANAGEMENT = "management"
    MIGRATION = "migration"
    VM = "vm"


class BootDevice(StrEnum):
    CDROM = "cdrom"
    HD = "hd"
    NETWORK = "network"


class VmAffinity(StrEnum):
    """oVirt's placement policy affinity: whether a running VM may move to another host."""

    MIGRATABLE = "migratable"  # by users and by the engine (maintenance, balancing)
    USER_MIGRATABLE = "user_migratable"  # only when an administrator asks
    PINNED = "pinned"  # never: it runs on its host until it stops


class StorageErrorResume(StrEnum):
    """oVirt's VmStorageErrorResumeBehaviour: what follows a pause by a storage I/O error."""

    AUTO_RESUME = "auto_resume"  # resumed once the VM's host reaches its storage again
    LEAVE_PAUSED = "leave_paused"  # an administrator decides (start resumes it)
    KILL = "kill"
