"""Affinity groups as the scheduler sees them for one VM: pure rules over host ids.

An enforcing rule filters hosts (a host that breaks it is left out, with the reason naming
the group, as oVirt's VmAffinityGroups and VmToHostsAffinityGroups filters say); a soft
rule only weighs them: the host breaking the fewest soft rules, weighted by their groups'
priority, wins before load is looked at.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum


class RuleKind(StrEnum):
    VMS = "vms"  # the VM with (positive) or apart from (negative) the group's other VMs
    HOSTS = "hosts"  # the VM on (positive) or off (negative) the group's hosts


@dataclass(frozen=True)
class AffinityConstraint:
    """One enabled rule of one group the VM is in.

    `peers`: for a VMs rule, the hosts the group's other VMs run on (or are migrating to),
    with their names; for a hosts rule, the group's hosts (names unused)."""

    group: str
    kind: RuleKind
    positive: bool
    enforcing: bool
    priority: float = 1.0
    peers: dict[uuid.UUID, tuple[str, ...]] = field(default_factory=dict)

    def breaks(self, host_id: uuid.UUID) -> int:
        """How much running on `host_id` breaks the rule (0: it keeps it)."""
        if self.kind is RuleKind.VMS:
            if self.positive:  # every other host running a peer is one host too many
                return len([h for h in self.peers if h != host_id])
            return int(host_id in self.peers)
        if not self.peers:
            return 0  # a hosts rule with no hosts says nothing
        return int((host_id in self.peers) != self.positive)

    def reason(self, host_id: uuid.UUID) -> str:
        """Why an enforcing rule leaves `host_id` out (the host's name is put before)."""
        polarity = "positive" if self.positive else "negative"
        what = f"{polarity} enforcing affinity group {self.group}"
        if self.kind is RuleKind.HOSTS:
            return (f"{what} runs the VM only on the group's hosts" if self.positive
                    else f"{what} keeps the VM off this host")
        if self.positive:
            names = sorted(n for h, ns in self.peers.items() if h != host_id for n in ns)
            return f"{what} keeps the VM with VM(s) {', '.join(names)}, running elsewhere"
        return (f"{what} keeps the VM apart from VM(s) "
                f"{', '.join(sorted(self.peers.get(host_id, ())))}, running on it")


def refusal(constraints: tuple[AffinityConstraint, ...], host_id: uuid.UUID) -> str | None:
    """The first enforcing rule `host_id` breaks, as a reason; None when it keeps them all."""
    for constraint in constraints:
        if constraint.enforcing and constraint.breaks(host_id):
            return constraint.reason(host_id)
    return None


def soft_penalty(constraints: tuple[AffinityConstraint, ...], host_id: uuid.UUID) -> float:
    """The soft rules `host_id` breaks, weighted by their groups' priority."""
    return sum(c.breaks(host_id) * max(c.priority, 0.0) for c in constraints
               if not c.enforcing)
