"""How a live migration runs (its policy) and how far it is (libvirt's job statistics)."""

from __future__ import annotations

from pydantic import Field

from overt.protocol.host import VmStatusReport
from overt.protocol.vm import WireModel


class MigrationPolicy(WireModel):
    """The engine's migration policy for one VM, as the source's node applies it with
    libvirt's flags and parameters. The defaults are a plain live migration."""

    bandwidth_mbps: int | None = Field(None, ge=1, le=1_000_000)  # None: hypervisor default
    auto_converge: bool = False  # throttle the guest's CPUs when it dirties memory too fast
    compressed: bool = False  # XBZRLE: resend changed pages as deltas
    encrypted: bool = False  # QEMU's stream over TLS
    max_downtime_ms: int | None = Field(None, ge=1, le=3_600_000)  # None: QEMU's (300 ms)
    # Switch to post-copy (the VM runs on the destination, pages fetched on demand) once
    # pre-copy has taken this many passes over memory without converging; None: never.
    post_copy_after_iterations: int | None = Field(None, ge=1, le=1000)
    # False: the guest is paused for the whole copy (libvirt without VIR_MIGRATE_LIVE), for
    # hypervisors whose live migration loses guest writes (engine.model.migration_safety).
    live: bool = True


class MigrationProgress(WireModel):
    """One reading of the VM's outgoing migration job (libvirt's `virDomainGetJobStats`);
    `active` is False when no migration runs (it has not started yet, or it is over)."""

    active: bool
    elapsed_ms: int = 0
    memory_total_bytes: int = 0
    memory_remaining_bytes: int = 0
    memory_processed_bytes: int = 0
    data_processed_bytes: int = 0
    iteration: int = 0  # passes over the guest's memory so far (QEMU's dirty-sync count)
    expected_downtime_ms: int | None = None
    post_copy: bool = False  # the switch to post-copy has been made

    @property
    def percent(self) -> int:
        """How much of the memory has been sent, as oVirt's step `progress` shows it."""
        if not self.memory_total_bytes:
            return 0
        done = self.memory_total_bytes - self.memory_remaining_bytes
        return max(0, min(99, done * 100 // self.memory_total_bytes))


class MigrationOutcome(WireModel):
    """A completed migration's figures (libvirt's completed job statistics)."""

    total_ms: int
    downtime_ms: int | None = None  # None: the hypervisor did not say
    transferred_bytes: int = 0
    iterations: int = 0
    post_copy: bool = False
    live: bool = True  # False: the guest was paused for the whole copy


class VmMigrated(VmStatusReport):
    """The result of `vm.migrate`: the VM's last state here and the migration's figures."""

    migration: MigrationOutcome | None = None
