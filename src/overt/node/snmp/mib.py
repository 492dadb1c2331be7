"""OVERT-MIB's object layout (docs/OVERT-MIB.txt): a snapshot as a sorted list of varbinds.

Every OID below derives from `overt.snmp.oids.ENTERPRISE` (a placeholder number).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from overt.node.snmp.snapshot import NodeSnapshot
from overt.snmp.oids import ENTERPRISE, oid_text

__all__ = ["ENTERPRISE", "oid_text"]

NODE = (*ENTERPRISE, 1)  # overtNode
HOST = (*NODE, 1)  # overtHost: scalars
VM_ENTRY = (*NODE, 2, 1)  # overtVmTable.overtVmEntry
NOTIFICATIONS = (*NODE, 0)
VM_STATE_CHANGE = (*NOTIFICATIONS, 1)  # overtVmStateChange

# vmState's enumeration (the agent's VmState values)
VM_STATES: dict[str, int] = {
    "running": 1, "paused": 2, "paused_error": 3, "shutting_down": 4, "shutoff": 5,
    "crashed": 6, "suspended": 7, "gone": 8,
}
UNKNOWN_STATE = 0
HOST_STATUSES: dict[str, int] = {"up": 1, "down": 2}

# columns of overtVmEntry
COL_INDEX, COL_NAME, COL_UUID, COL_STATE, COL_VCPUS, COL_MEMORY = 1, 2, 3, 4, 5, 6


@dataclass(frozen=True, order=True)
class VarBind:
    oid: tuple[int, ...]
    type: str  # pass_persist's type names: integer, gauge, string, ...
    value: str


def parse_oid(text: str) -> tuple[int, ...] | None:
    parts = text.strip().strip(".").split(".")
    if not parts or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


def varbinds(snapshot: NodeSnapshot) -> list[VarBind]:
    """Every object of the node's subtree in OID order (what a walk returns)."""
    out = [
        VarBind((*HOST, 1, 0), "string", snapshot.host_name),
        VarBind((*HOST, 2, 0), "string", snapshot.host_uuid),
        VarBind((*HOST, 3, 0), "integer", str(HOST_STATUSES.get(snapshot.status, 0))),
        VarBind((*HOST, 4, 0), "gauge", str(len(snapshot.vms))),
    ]
    rows = sorted(snapshot.vms, key=lambda v: (v.name, v.uuid))
    for index, vm in enumerate(rows, start=1):
        out += [
            VarBind((*VM_ENTRY, COL_INDEX, index), "integer", str(index)),
            VarBind((*VM_ENTRY, COL_NAME, index), "string", vm.name),
            VarBind((*VM_ENTRY, COL_UUID, index), "string", vm.uuid),
            VarBind((*VM_ENTRY, COL_STATE, index), "integer",
                    str(VM_STATES.get(vm.state, UNKNOWN_STATE))),
            VarBind((*VM_ENTRY, COL_VCPUS, index), "gauge", str(vm.vcpus)),
            VarBind((*VM_ENTRY, COL_MEMORY, index), "gauge", str(vm.memory_mib)),
        ]
    out.sort()
    return out


def get(binds: list[VarBind], oid: tuple[int, ...]) -> VarBind | None:
    i = bisect.bisect_left([b.oid for b in binds], oid)
    return binds[i] if i < len(binds) and binds[i].oid == oid else None


def get_next(binds: list[VarBind], oid: tuple[int, ...]) -> VarBind | None:
    i = bisect.bisect_right([b.oid for b in binds], oid)
    return binds[i] if i < len(binds) else None
