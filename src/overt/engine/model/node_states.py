"""How a node's view of a VM maps onto oVirt's VmStatus."""

from __future__ import annotations

from overt.engine.model.status import VmStatus
from overt.protocol.host import VmState, VmStatusReport

# libvirt's reason for a VM a disk's read or write error paused (its disks' error policy
# is "stop": the guest never sees the error).
IO_ERROR = "io_error"

NODE_TO_VM_STATUS: dict[VmState, VmStatus] = {
    VmState.RUNNING: VmStatus.UP,
    VmState.PAUSED: VmStatus.PAUSED,
    VmState.PAUSED_ERROR: VmStatus.PAUSED,
    VmState.SHUTTING_DOWN: VmStatus.POWERING_DOWN,
    VmState.SHUTOFF: VmStatus.DOWN,
    VmState.CRASHED: VmStatus.DOWN,
    VmState.SUSPENDED: VmStatus.SUSPENDED,
    VmState.GONE: VmStatus.DOWN,
}

# Statuses in which a VM occupies a host (its memory counts against the host).
ON_HOST = frozenset({
    VmStatus.UP, VmStatus.POWERING_UP, VmStatus.POWERING_DOWN, VmStatus.PAUSED,
    VmStatus.REBOOT_IN_PROGRESS, VmStatus.WAIT_FOR_LAUNCH, VmStatus.MIGRATING,
    VmStatus.NOT_RESPONDING, VmStatus.UNKNOWN, VmStatus.SAVING_STATE, VmStatus.RESTORING_STATE,
})


def vm_status_of(state: VmState) -> VmStatus:
    return NODE_TO_VM_STATUS[state]


def paused_reason(report: VmStatusReport) -> str:
    """Why the node says a paused VM is paused: libvirt's reason ("io_error", "user", ...),
    given alone in a state read and after the event's name in a lifecycle event
    ("suspended/io_error")."""
    return report.reason.rpartition("/")[2]
