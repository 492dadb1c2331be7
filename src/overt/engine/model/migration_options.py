"""Migration options (oVirt's `MigrationOptions`) on a cluster and on a VM, the policies
they name, and the one policy a VM's migration runs with. Pure: no I/O.

A VM's options override its cluster's field by field (None: inherit); the policy named
gives the defaults the explicit switches override. Bandwidth is oVirt's: `auto` and
`hypervisor_default` leave QEMU's own limit, `custom` sets `custom_value` Mbps.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from overt.engine.model.errors import InvalidInput
from overt.protocol.migration import MigrationPolicy

BandwidthMethod = Literal["auto", "hypervisor_default", "custom"]
BANDWIDTH_METHODS: tuple[BandwidthMethod, ...] = ("auto", "hypervisor_default", "custom")
POST_COPY_AFTER_ITERATIONS = 3  # pre-copy passes before a non-converging VM switches


@dataclass(frozen=True)
class PolicyDefaults:
    """What one of oVirt's built-in migration policies turns on."""

    name: str
    description: str
    auto_converge: bool = False
    compressed: bool = False
    max_downtime_ms: int | None = None
    post_copy: bool = False


LEGACY_ID = uuid.UUID("00000000-0000-0000-0000-000000000000")
MINIMAL_DOWNTIME_ID = uuid.UUID("80554327-0569-496b-bdeb-fcbbf52b827b")
SUSPEND_WORKLOAD_ID = uuid.UUID("80554327-0569-496b-bdeb-fcbbf52b827c")
POST_COPY_ID = uuid.UUID("a7aeedb2-8d66-4e51-bb22-32595027ce71")
VERY_LARGE_VMS_ID = uuid.UUID("57237b82-b8c2-425f-b425-114b35219626")

POLICIES: dict[uuid.UUID, PolicyDefaults] = {
    LEGACY_ID: PolicyDefaults("Legacy", "QEMU's own migration, as before policies existed."),
    MINIMAL_DOWNTIME_ID: PolicyDefaults(
        "Minimal downtime", "The VM should not notice the migration; it may not converge "
        "if it writes its memory fast.", auto_converge=True, max_downtime_ms=300),
    SUSPEND_WORKLOAD_ID: PolicyDefaults(
        "Suspend workload if needed", "The VM may be slowed down and pause longer so the "
        "migration converges.", auto_converge=True, max_downtime_ms=5000),
    POST_COPY_ID: PolicyDefaults(
        "Post-copy migration", "The VM should not notice the migration; if it does not "
        "converge, it switches to post-copy and finishes on the destination.",
        auto_converge=True, post_copy=True),
    VERY_LARGE_VMS_ID: PolicyDefaults(
        "Very large VMs", "Large, busy VMs: compressed transfer and a longer pause allowed.",
        auto_converge=True, compressed=True, max_downtime_ms=1000),
}


@dataclass(frozen=True)
class MigrationOptions:
    """One object's migration options; None everywhere is "inherit" (a cluster inherits
    the engine's defaults: a plain live migration)."""

    policy_id: uuid.UUID | None = None
    auto_converge: bool | None = None
    compressed: bool | None = None
    encrypted: bool | None = None
    bandwidth_method: BandwidthMethod | None = None
    bandwidth_mbps: int | None = None
    # Fields a client set to "inherit" (a change clears them); never stored.
    inherit: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "inherit" and getattr(self, f.name) is not None}
        if self.policy_id is not None:
            data["policy_id"] = str(self.policy_id)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> MigrationOptions:
        data = dict(data or {})
        if data.get("policy_id") is not None:
            data["policy_id"] = uuid.UUID(data["policy_id"])
        return cls(**data)

    def updated(self, change: MigrationOptions) -> MigrationOptions:
        """These options with what `change` sets (None leaves a field as it is)."""
        values: dict[str, Any] = {name: None for name in change.inherit}
        if "bandwidth_method" in change.inherit:
            values["bandwidth_mbps"] = None
        values.update({f.name: getattr(change, f.name) for f in fields(change)
                       if f.name != "inherit" and getattr(change, f.name) is not None})
        return replace(self, **values)


def check_policy_id(text: str, where: str) -> uuid.UUID:
    """A policy id a client sent: one of the built-in policies, else a 400."""
    try:
        policy_id = uuid.UUID(text)
    except ValueError:
        policy_id = None
    if policy_id is None or policy_id not in POLICIES:
        known = ", ".join(f"{p} ({d.name})" for p, d in POLICIES.items())
        raise InvalidInput(f"{where}.policy.id {text!r} is not a migration policy; the "
                           f"policies are: {known}")
    return policy_id


def check(options: MigrationOptions, where: str) -> MigrationOptions:
    """Options as stored: a custom bandwidth needs a positive value, others none."""
    mbps, method = options.bandwidth_mbps, options.bandwidth_method
    if mbps is not None and mbps <= 0:
        raise InvalidInput(f"{where}.bandwidth.custom_value must be a positive number of "
                           f"Mbps, not {mbps}")
    if method == "custom" and mbps is None:
        raise InvalidInput(f"{where}.bandwidth.custom_value is required with the "
                           "assignment method custom")
    if mbps is not None and method is None:
        options = replace(options, bandwidth_method="custom")
    elif method is not None and method != "custom":
        options = replace(options, bandwidth_mbps=None)
    return options


def check_downtime(value: int | None, where: str) -> int | None:
    """oVirt's `migration_downtime` in ms; -1 (or None) means the policy's default."""
    if value is None or value == -1:
        return None
    if not 1 <= value <= 3_600_000:
        raise InvalidInput(f"{where}.migration_downtime must be between 1 and 3600000 ms "
                           f"(or -1 for the policy's), not {value}")
    return value


def effective_policy(cluster: MigrationOptions, vm: MigrationOptions,
                     vm_downtime_ms: int | None = None) -> MigrationPolicy:
    """The policy the VM migrates with: its own options over its cluster's, over the
    defaults of the policy either names."""
    options = cluster.updated(vm)
    defaults = POLICIES[options.policy_id or LEGACY_ID]
    custom = options.bandwidth_method == "custom" and options.bandwidth_mbps is not None
    return MigrationPolicy(
        bandwidth_mbps=options.bandwidth_mbps if custom else None,
        auto_converge=defaults.auto_converge if options.auto_converge is None
        else options.auto_converge,
        compressed=defaults.compressed if options.compressed is None else options.compressed,
        encrypted=bool(options.encrypted),
        max_downtime_ms=vm_downtime_ms if vm_downtime_ms is not None
        else defaults.max_downtime_ms,
        post_copy_after_iterations=POST_COPY_AFTER_ITERATIONS if defaults.post_copy else None)
