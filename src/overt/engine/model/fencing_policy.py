"""A cluster's fencing policy (oVirt's `FencingPolicy`) and the rules a lost host is judged
by: how long its grace period lasts and whether it may be fenced. Pure: no I/O.

oVirt's grace (`VdsManager.calcTimeoutToFence`): `TimeoutToResetVdsInSeconds` (60 s) plus
`DelayResetPerVmInSeconds` (0.5 s) per VM the host runs; a busy host gets longer to answer
before it is fenced. Here both are the cluster's (`grace_s`, `grace_per_vm_s`).

Storage liveness (`skip_if_sd_active`) comes from the nodes' lease keepers: a host whose
id lease on a shared storage domain was renewed within its timeout is `ACTIVE`; a host
that never reported one is `UNKNOWN`, which never skips a fence (oVirt fences a host whose
storage activity it cannot read).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from overt.engine.model.errors import InvalidInput

DEFAULT_GRACE_S = 60.0
DEFAULT_GRACE_PER_VM_S = 0.5
DEFAULT_CONNECTIVITY_THRESHOLD = 50  # oVirt's percentage


class Liveness(StrEnum):
    """Whether a lost host still renews its storage leases."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class FencingPolicy:
    enabled: bool = True
    skip_if_connectivity_broken: bool = False
    connectivity_threshold: int = DEFAULT_CONNECTIVITY_THRESHOLD
    skip_if_sd_active: bool = False
    # Gluster's skips are accepted on the wire and stored, with no effect: no Gluster here.
    skip_if_gluster_bricks_up: bool = False
    skip_if_gluster_quorum_not_met: bool = False
    grace_s: float = DEFAULT_GRACE_S
    grace_per_vm_s: float = DEFAULT_GRACE_PER_VM_S

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None,
                  defaults: FencingPolicy | None = None) -> FencingPolicy:
        """The stored policy; what it does not set comes from `defaults` (the engine's)."""
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return replace(defaults or cls(), **known)

    def updated(self, changes: dict[str, Any]) -> FencingPolicy:
        """This policy with the fields a client gave (None: left as it is)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def check(policy: FencingPolicy, where: str = "cluster.fencing_policy") -> FencingPolicy:
    if not 0 <= policy.connectivity_threshold <= 100:
        raise InvalidInput(f"{where}.skip_if_connectivity_broken.threshold must be between 0 "
                           f"and 100, not {policy.connectivity_threshold}")
    for name in ("grace_s", "grace_per_vm_s"):
        value = getattr(policy, name)
        if not 0 <= value <= 3600:
            raise InvalidInput(f"{where}.{name} must be between 0 and 3600 seconds, "
                               f"not {value}")
    return policy


def grace_period_s(policy: FencingPolicy, running_vms: int) -> float:
    """How long a host that stopped answering stays `connecting` before it is judged
    non responsive: longer for a host running more VMs, as oVirt's."""
    return policy.grace_s + policy.grace_per_vm_s * max(running_vms, 0)


@dataclass(frozen=True)
class FenceVerdict:
    """Whether to fence a non responsive host, and the reason said in its event."""

    fence: bool
    reason: str


def fence_verdict(policy: FencingPolicy, *, host_name: str, power_management: bool,
                  cluster_hosts: int, unreachable_hosts: int,
                  storage: Liveness) -> FenceVerdict:
    """oVirt's fencing checks, in its order: the policy, the host's power management,
    connectivity of the cluster (a network outage, not a host failure), storage activity.

    `cluster_hosts`: the cluster's hosts that are monitored (not in maintenance);
    `unreachable_hosts`: those of them connecting or non responsive, this one included."""
    if not policy.enabled:
        return FenceVerdict(False, f"fencing is disabled in the fencing policy of host "
                                   f"{host_name}'s cluster")
    if not power_management:
        return FenceVerdict(False, f"host {host_name} has no power management configured")
    if policy.skip_if_connectivity_broken and cluster_hosts:
        share = 100 * unreachable_hosts / cluster_hosts
        if share >= policy.connectivity_threshold:
            return FenceVerdict(False, f"{unreachable_hosts} of the {cluster_hosts} hosts of "
                                       f"its cluster are unreachable ({share:.0f}% >= "
                                       f"{policy.connectivity_threshold}%): a network "
                                       "outage is more likely than host failures")
    if policy.skip_if_sd_active and storage is Liveness.ACTIVE:
        return FenceVerdict(False, f"host {host_name} still renews its storage leases")
    note = ""
    if policy.skip_if_sd_active and storage is Liveness.UNKNOWN:
        note = " (whether it still renews storage leases is unknown: it reported none)"
    return FenceVerdict(True, f"host {host_name} is non responsive{note}")
