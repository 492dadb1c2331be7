"""What the agent needs from a hypervisor: the interface its drivers implement.

The agent core sees only protocol models and the small types below, never libvirt's,
so a simulated driver (for scale benchmarks) can stand in behind the same interface.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from overt.protocol.commands import BlockCopyState, DiskOverlay, MemorySaved, VmTicket
from overt.protocol.host import HostCapabilities, VirtMode, VmStatusReport
from overt.protocol.migration import MigrationPolicy, MigrationProgress, VmMigrated
from overt.protocol.vm import CdromSpec, ChapAuth, DiskFormat, DiskSource, NicSpec, VmSpec


@dataclass(frozen=True)
class VmChanged:
    """A VM changed state (a hypervisor lifecycle event), with its state right after."""

    vm: VmStatusReport
    detail: str


@dataclass(frozen=True)
class HypervisorReconnected:
    """The connection to the hypervisor was lost and is back: the full state must be resent."""


HypervisorEvent = VmChanged | HypervisorReconnected


@dataclass(frozen=True)
class HostCounters:
    """The host's cumulative counters at one moment (stats are rates between two of these)."""

    cpu_busy_ns: int
    cpu_total_ns: int
    memory_total_kib: int
    memory_free_kib: int  # free + buffers + cache: what guests could still get
    nics: dict[str, tuple[int, int]] = field(default_factory=dict)  # name: (rx, tx) bytes


@dataclass(frozen=True)
class VmCounters:
    """One running VM's cumulative counters at one moment."""

    vm_id: uuid.UUID | None
    name: str
    domain_uuid: uuid.UUID
    cpu_time_ns: int
    memory_kib: int
    disk_read_bytes: int = 0
    disk_write_bytes: int = 0
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0


class Hypervisor(Protocol):
    """A node's hypervisor. Methods raise `NodeFailure` with an administrator's message."""

    @property
    def virt_mode(self) -> VirtMode:
        """`kvm` or `qemu`, known once connected."""

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None:
        """Connect, subscribe to lifecycle events and learn the virtualization mode."""

    async def close(self) -> None:
        """Disconnect. Never stops a VM."""

    def events(self) -> AsyncIterator[HypervisorEvent]:
        """Lifecycle events in the order the hypervisor reported them."""

    async def host_uuid(self) -> uuid.UUID: ...

    async def capabilities(self) -> HostCapabilities: ...

    async def list_vms(self) -> list[VmStatusReport]:
        """Every domain, running or defined; external domains have `vm_id=None`."""

    async def free_memory_mib(self) -> int: ...

    async def counters(self) -> tuple[HostCounters, list[VmCounters]]: ...

    async def define(self, spec: VmSpec, job: str | None) -> VmStatusReport: ...

    async def start(self, vm_id: uuid.UUID, spec: VmSpec | None, *, paused: bool,
                    job: str | None, restore_from: Path | None = None,
                    restore_as_spec: bool = False) -> VmStatusReport:
        """Boot the VM, or resume it from the state in `restore_from` (its domain XML
        `spec`'s with `restore_as_spec`: a memory snapshot's state over today's volumes)."""

    async def save(self, vm_id: uuid.UUID, path: Path) -> VmStatusReport:
        """Write the VM's memory to `path` and stop it (suspend to disk)."""

    async def shutdown(self, vm_id: uuid.UUID, *, timeout_s: float,
                       force: bool) -> VmStatusReport: ...

    async def destroy(self, vm_id: uuid.UUID) -> VmStatusReport: ...

    async def reboot(self, vm_id: uuid.UUID) -> VmStatusReport: ...

    async def migrate(self, vm_id: uuid.UUID, destination_uri: str, *,
                      migration_uri: str | None, display_address: str | None,
                      timeout_s: float, policy: MigrationPolicy) -> VmMigrated:
        """Live-migrate the running VM to the hypervisor at `destination_uri` as `policy`
        says; on failure it keeps running here."""

    async def prepare_incoming(self, vm_id: uuid.UUID,
                               credentials: dict[str, ChapAuth]) -> None:
        """Before a migration brings the VM here: define the iSCSI CHAP secrets (by secret
        id) its disks name, and keep them until it arrives or `abandon_incoming`."""

    async def abandon_incoming(self, vm_id: uuid.UUID) -> None:
        """The VM's migration here failed: remove the secrets no VM here names."""

    async def migration_progress(self, vm_id: uuid.UUID) -> MigrationProgress:
        """How far the VM's outgoing migration is (inactive when none runs)."""

    async def cancel_migration(self, vm_id: uuid.UUID) -> VmStatusReport:
        """Abort the VM's outgoing migration; it keeps running here."""

    async def pause(self, vm_id: uuid.UUID) -> VmStatusReport: ...

    async def resume(self, vm_id: uuid.UUID) -> VmStatusReport: ...

    async def undefine(self, vm_id: uuid.UUID) -> VmStatusReport: ...

    async def status(self, vm_id: uuid.UUID) -> VmStatusReport: ...

    async def set_ticket(self, vm_id: uuid.UUID, password: str, expiry_s: int) -> VmTicket: ...

    async def plug_nic(self, vm_id: uuid.UUID, nic: NicSpec) -> VmStatusReport:
        """Hot-plug a NIC into the running VM (already there: success)."""

    async def unplug_nic(self, vm_id: uuid.UUID, nic: NicSpec) -> VmStatusReport:
        """Hot-unplug a NIC, once the guest released it (already gone: success)."""

    async def set_nic_link(self, vm_id: uuid.UUID, nic: NicSpec) -> VmStatusReport:
        """Set a plugged NIC's link state to `nic.linked`."""

    async def change_cdrom(self, vm_id: uuid.UUID, cdrom: CdromSpec) -> VmStatusReport:
        """Put `cdrom.source` in the running VM's cdrom drive (None: eject)."""

    async def disk_snapshot(self, vm_id: uuid.UUID, disks: Sequence[DiskOverlay]) -> None:
        """Make each disk's `overlay` its new active volume, atomically (already: success)."""

    async def memory_snapshot(self, vm_id: uuid.UUID, disks: Sequence[DiskOverlay],
                              memory: Path, metadata: Path) -> MemorySaved:
        """`disk_snapshot` with the guest's RAM and device state written to `memory` at
        the same instant and the domain's XML to `metadata` (taken already: success, no
        pause measured, the files as the first attempt left them)."""

    async def block_commit(self, vm_id: uuid.UUID, disk: str, top: str, base: str, *,
                           timeout_s: float) -> None:
        """Merge `top` into `base` in the running VM's disk whose active volume is `disk`
        (pivoting to `base` when `top` is that volume); merged already: success."""

    async def block_copy(self, vm_id: uuid.UUID, disk_id: uuid.UUID, destination: DiskSource,
                         fmt: DiskFormat, action: str) -> BlockCopyState:
        """Live storage migration of the running VM's disk `disk_id` to the volume
        `destination` (made beforehand): `start`, `pivot` or `abort` (see `VmBlockCopy`)."""

    async def block_copy_state(self, vm_id: uuid.UUID, disk_id: uuid.UUID,
                               destination: DiskSource) -> BlockCopyState:
        """Where the disk's live storage migration to `destination` stands."""
