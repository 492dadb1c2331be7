"""oVirt's `MigrationOptions` on the wire (a cluster's and a VM's `migration` element)."""

from __future__ import annotations

from typing import Any

from overt.engine.api.wire.parse import Node
from overt.engine.model.errors import InvalidInput
from overt.engine.model.migration_options import (
    BANDWIDTH_METHODS,
    POLICIES,
    BandwidthMethod,
    MigrationOptions,
    check_policy_id,
)

_INHERITABLE = {"true": True, "false": False, "inherit": None}


def _inheritable(node: Node, name: str, where: str) -> bool | None:
    raw = node.get_str(name)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value not in _INHERITABLE:
        raise InvalidInput(f"{where}.{name} must be one of true, false, inherit, not {raw!r}")
    return _INHERITABLE[value]


def _method(raw: str | None, where: str) -> BandwidthMethod | None:
    if raw is None:
        return None
    for method in BANDWIDTH_METHODS:
        if raw.strip().lower() == method:
            return method
    raise InvalidInput(f"{where}.bandwidth.assignment_method must be one of "
                       f"{', '.join(BANDWIDTH_METHODS)}, not {raw!r}")


def read_migration(node: Node | None, where: str) -> MigrationOptions | None:
    """The `migration` element's options (None when absent); "inherit" reads as None."""
    if node is None:
        return None
    bandwidth = node.child("bandwidth")
    policy = node.child("policy")
    policy_text = (policy.attrs.get("id") or policy.get_str("id")) if policy is not None else None
    method = bandwidth.get_str("assignment_method") if bandwidth is not None else None
    inherit = {name for name in ("auto_converge", "compressed", "encrypted")
               if (node.get_str(name) or "").strip().lower() == "inherit"}
    if policy_text == "inherit":  # as oVirt's ansible modules send it
        inherit.add("policy_id")
        policy_text = None
    if method is not None and method.strip().lower() == "inherit":
        inherit.add("bandwidth_method")
        method = None
    return MigrationOptions(inherit=frozenset(inherit),
        policy_id=check_policy_id(policy_text, where) if policy_text else None,
        auto_converge=_inheritable(node, "auto_converge", where),
        compressed=_inheritable(node, "compressed", where),
        encrypted=_inheritable(node, "encrypted", where),
        bandwidth_method=_method(method, where),
        bandwidth_mbps=bandwidth.get_int("custom_value") if bandwidth is not None else None)


def _word(value: bool | None) -> str:
    return "inherit" if value is None else str(value).lower()


def migration_view(options: MigrationOptions) -> dict[str, Any]:
    """The `migration` element as oVirt shows it (inherited fields as `inherit`)."""
    policy = POLICIES.get(options.policy_id) if options.policy_id is not None else None
    return {
        "auto_converge": _word(options.auto_converge),
        "compressed": _word(options.compressed),
        "encrypted": _word(options.encrypted),
        "bandwidth": {"assignment_method": options.bandwidth_method,
                      "custom_value": options.bandwidth_mbps}
        if options.bandwidth_method is not None else None,
        "policy": {"id": str(options.policy_id), "name": policy.name,
                   "description": policy.description}
        if options.policy_id is not None and policy is not None else None,
    }
