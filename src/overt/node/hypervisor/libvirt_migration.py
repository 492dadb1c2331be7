"""A migration policy as libvirt's flags and parameters, and libvirt's job statistics read
back as the protocol's progress and outcome. Pure: the driver makes the calls."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import libvirt

from overt.protocol.migration import MigrationOutcome, MigrationPolicy, MigrationProgress

_MIB = 1024 * 1024


def migration_flags(policy: MigrationPolicy, *, persistent: bool) -> int:
    """`virDomainMigrate3`'s flags: live unless the policy says the guest is paused for
    the copy (then nothing that steers a running guest); the policy's switches on top."""
    flags: int = libvirt.VIR_MIGRATE_LIVE if policy.live else 0
    if persistent:
        flags |= libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    if policy.auto_converge and policy.live:
        flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
    if policy.compressed:
        flags |= libvirt.VIR_MIGRATE_COMPRESSED
    if policy.encrypted:
        flags |= libvirt.VIR_MIGRATE_TLS
    if policy.post_copy_after_iterations is not None and policy.live:
        flags |= libvirt.VIR_MIGRATE_POSTCOPY  # allows the switch; migrateStartPostCopy makes it
    return flags


def bandwidth_mib_s(mbps: int) -> int:
    """oVirt counts bandwidth in Mbps, libvirt in MiB/s (at least 1)."""
    return max(1, round(mbps * 1_000_000 / 8 / _MIB))


def migration_params(policy: MigrationPolicy, *, migration_uri: str | None,
                     destination_xml: str | None) -> dict[str, object]:
    """`virDomainMigrate3`'s typed parameters."""
    params: dict[str, object] = {}
    if migration_uri:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = migration_uri
    if destination_xml is not None:
        params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = destination_xml
    if policy.bandwidth_mbps is not None:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = bandwidth_mib_s(policy.bandwidth_mbps)
    return params


def _int(stats: Mapping[str, object], key: str) -> int:
    value = stats.get(key, 0)
    return int(value) if isinstance(value, int | float) else 0


def progress_of(stats: Mapping[str, object], *, post_copy: bool = False) -> MigrationProgress:
    """A running job's statistics (`virDomainGetJobStats`, no flags) as progress."""
    if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_UNBOUNDED:
        return MigrationProgress(active=False)
    return MigrationProgress(
        active=True, elapsed_ms=_int(stats, "time_elapsed"),
        memory_total_bytes=_int(stats, "memory_total"),
        memory_remaining_bytes=_int(stats, "memory_remaining"),
        memory_processed_bytes=_int(stats, "memory_processed"),
        data_processed_bytes=_int(stats, "data_processed"),
        iteration=_int(stats, "memory_iteration"),
        expected_downtime_ms=_int(stats, "downtime") if "downtime" in stats else None,
        post_copy=post_copy)


def outcome_of(stats: Mapping[str, object], *, measured_ms: int,
               post_copy: bool = False, live: bool = True) -> MigrationOutcome:
    """A completed job's statistics (`VIR_DOMAIN_JOB_STATS_COMPLETED`) as the outcome;
    `measured_ms` (the agent's own clock) when libvirt kept no figures."""
    if stats.get("type") != libvirt.VIR_DOMAIN_JOB_COMPLETED:
        return MigrationOutcome(total_ms=measured_ms, post_copy=post_copy, live=live)
    return MigrationOutcome(
        total_ms=_int(stats, "time_elapsed") or measured_ms,
        downtime_ms=_int(stats, "downtime") if "downtime" in stats else None,
        transferred_bytes=_int(stats, "data_processed") or _int(stats, "memory_processed"),
        iterations=_int(stats, "memory_iteration"), post_copy=post_copy, live=live)


@dataclass
class ConvergenceSteps:
    """What the node does while a migration runs, each once: set the policy's max downtime
    when the job has started (QEMU takes it only then), and switch to post-copy once
    pre-copy has made `post_copy_after_iterations` passes without finishing."""

    policy: MigrationPolicy
    downtime_set: bool = False
    post_copy: bool = False

    @property
    def steers(self) -> bool:
        """Whether there is anything (left) to do while the migration runs."""
        return (self.policy.max_downtime_ms is not None and not self.downtime_set) or (
            self.policy.live and self.policy.post_copy_after_iterations is not None
            and not self.post_copy)

    def set_downtime(self, progress: MigrationProgress) -> int | None:
        """The max downtime to set now (None: nothing to do)."""
        if self.downtime_set or not progress.active or self.policy.max_downtime_ms is None:
            return None
        self.downtime_set = True
        return self.policy.max_downtime_ms

    def start_post_copy(self, progress: MigrationProgress) -> bool:
        after = self.policy.post_copy_after_iterations
        if self.post_copy or after is None or not self.policy.live or not progress.active \
                or progress.iteration < after:
            return False
        self.post_copy = True
        return True
