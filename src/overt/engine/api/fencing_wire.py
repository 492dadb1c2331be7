"""oVirt's `FencingPolicy` on the wire (a cluster's `fencing_policy` element).

Overt adds `host_grace_period` (`seconds`, `per_vm_seconds`): how long a silent host stays
connecting before it is non responsive (oVirt has it engine-wide, in `engine-config`);
oVirt's SDK skips elements it does not know."""

from __future__ import annotations

from typing import Any

from overt.engine.api.wire.parse import Node
from overt.engine.model.errors import InvalidInput
from overt.engine.model.fencing_policy import FencingPolicy

WHERE = "cluster.fencing_policy"


def _seconds(node: Node, name: str) -> float | None:
    raw = node.get_str(name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise InvalidInput(f"{WHERE}.host_grace_period.{name} must be a number of seconds, "
                           f"not {raw!r}") from None


def read_fencing_policy(node: Node | None) -> dict[str, Any] | None:
    """The fields the element gives (None: absent), as `FencingPolicy.updated` takes them."""
    if node is None:
        return None
    connectivity = node.child("skip_if_connectivity_broken")
    storage = node.child("skip_if_sd_active")
    grace = node.child("host_grace_period")
    return {
        "enabled": node.get_bool("enabled"),
        "skip_if_connectivity_broken": connectivity.get_bool("enabled")
        if connectivity is not None else None,
        "connectivity_threshold": connectivity.get_int("threshold")
        if connectivity is not None else None,
        "skip_if_sd_active": storage.get_bool("enabled") if storage is not None else None,
        "skip_if_gluster_bricks_up": node.get_bool("skip_if_gluster_bricks_up"),
        "skip_if_gluster_quorum_not_met": node.get_bool("skip_if_gluster_quorum_not_met"),
        "grace_s": _seconds(grace, "seconds") if grace is not None else None,
        "grace_per_vm_s": _seconds(grace, "per_vm_seconds") if grace is not None else None,
    }


def fencing_policy_view(policy: FencingPolicy) -> dict[str, Any]:
    return {
        "enabled": policy.enabled,
        "skip_if_connectivity_broken": {"enabled": policy.skip_if_connectivity_broken,
                                        "threshold": policy.connectivity_threshold},
        "skip_if_sd_active": {"enabled": policy.skip_if_sd_active},
        "skip_if_gluster_bricks_up": policy.skip_if_gluster_bricks_up,
        "skip_if_gluster_quorum_not_met": policy.skip_if_gluster_quorum_not_met,
        "host_grace_period": {"seconds": policy.grace_s,
                              "per_vm_seconds": policy.grace_per_vm_s},
    }
