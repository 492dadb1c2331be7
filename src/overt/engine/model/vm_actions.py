"""Which user actions each VM status allows: the VM state machine as one table."""

from __future__ import annotations

from enum import StrEnum

from overt.engine.model.errors import Conflict
from overt.engine.model.status import VmStatus as S


class VmAction(StrEnum):
    START = "start"
    STOP = "stop"
    SHUTDOWN = "shutdown"
    REBOOT = "reboot"
    SUSPEND = "suspend"
    REMOVE = "remove"
    TICKET = "ticket"
    UPDATE_DEVICES = "update_devices"  # add/remove disks and NICs
    HOTPLUG_NIC = "hotplug_nic"  # plug, unplug or relink a NIC of a running VM
    MIGRATE = "migrate"
    SNAPSHOT = "snapshot"  # take or remove a disk-only snapshot


_RUNNING = frozenset({S.UP, S.POWERING_UP, S.POWERING_DOWN, S.REBOOT_IN_PROGRESS, S.PAUSED,
                      S.NOT_RESPONDING, S.MIGRATING})

VM_ACTIONS: dict[VmAction, frozenset[S]] = {
    VmAction.START: frozenset({S.DOWN, S.SUSPENDED, S.PAUSED}),
    VmAction.STOP: _RUNNING | {S.WAIT_FOR_LAUNCH, S.SUSPENDED, S.UNKNOWN},
    VmAction.SHUTDOWN: frozenset({S.UP, S.POWERING_UP, S.REBOOT_IN_PROGRESS, S.PAUSED}),
    VmAction.REBOOT: frozenset({S.UP}),
    VmAction.SUSPEND: frozenset({S.UP}),
    VmAction.REMOVE: frozenset({S.DOWN}),
    VmAction.TICKET: frozenset({S.UP, S.POWERING_UP, S.PAUSED, S.REBOOT_IN_PROGRESS,
                                S.POWERING_DOWN}),
    VmAction.UPDATE_DEVICES: frozenset({S.DOWN}),
    VmAction.HOTPLUG_NIC: frozenset({S.UP, S.POWERING_UP, S.PAUSED}),
    VmAction.MIGRATE: frozenset({S.UP}),
    VmAction.SNAPSHOT: frozenset({S.DOWN, S.UP}),
}

_VERBS = {
    VmAction.START: "run VM", VmAction.STOP: "stop VM", VmAction.SHUTDOWN: "shut down VM",
    VmAction.REBOOT: "reboot VM", VmAction.SUSPEND: "suspend VM", VmAction.REMOVE: "remove VM",
    VmAction.TICKET: "set console ticket", VmAction.UPDATE_DEVICES: "change the VM's devices",
    VmAction.HOTPLUG_NIC: "change a NIC of the running VM", VmAction.MIGRATE: "migrate VM",
    VmAction.SNAPSHOT: "change the snapshots of VM",
}


def check_vm_action(action: VmAction, status: S, *, vm_name: str) -> None:
    """Raise Conflict, in oVirt's words, when `action` is not allowed in `status`."""
    if status not in VM_ACTIONS[action]:
        state = status.replace("_", " ")
        raise Conflict(f"Cannot {_VERBS[action]} {vm_name}: the VM is {state}.")
