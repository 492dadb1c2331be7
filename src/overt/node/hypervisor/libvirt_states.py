"""libvirt's domain states, reasons and lifecycle events, mapped to `VmState`.

Tables, not branches: each mapping is data, checked exhaustively by the unit tests.
"""

from __future__ import annotations

import libvirt

from overt.protocol.host import VmState

# Paused for a reason nobody asked for: the VM cannot run (an I/O error, a KVM
# emulation failure shows as "unknown", a watchdog, a guest panic, ...).
_PAUSED_ERROR_REASONS = frozenset({
    libvirt.VIR_DOMAIN_PAUSED_UNKNOWN,
    libvirt.VIR_DOMAIN_PAUSED_IOERROR,
    libvirt.VIR_DOMAIN_PAUSED_WATCHDOG,
    libvirt.VIR_DOMAIN_PAUSED_CRASHED,
    libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED,
})

_PAUSED_REASONS = {
    libvirt.VIR_DOMAIN_PAUSED_UNKNOWN: "unknown",
    libvirt.VIR_DOMAIN_PAUSED_USER: "user",
    libvirt.VIR_DOMAIN_PAUSED_MIGRATION: "migration",
    libvirt.VIR_DOMAIN_PAUSED_SAVE: "save",
    libvirt.VIR_DOMAIN_PAUSED_DUMP: "dump",
    libvirt.VIR_DOMAIN_PAUSED_IOERROR: "io_error",
    libvirt.VIR_DOMAIN_PAUSED_WATCHDOG: "watchdog",
    libvirt.VIR_DOMAIN_PAUSED_FROM_SNAPSHOT: "from_snapshot",
    libvirt.VIR_DOMAIN_PAUSED_SHUTTING_DOWN: "shutting_down",
    libvirt.VIR_DOMAIN_PAUSED_SNAPSHOT: "snapshot",
    libvirt.VIR_DOMAIN_PAUSED_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PAUSED_STARTING_UP: "starting_up",
    libvirt.VIR_DOMAIN_PAUSED_POSTCOPY: "postcopy",
    libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED: "postcopy_failed",
}

_RUNNING_REASONS = {
    libvirt.VIR_DOMAIN_RUNNING_UNKNOWN: "unknown",
    libvirt.VIR_DOMAIN_RUNNING_BOOTED: "booted",
    libvirt.VIR_DOMAIN_RUNNING_MIGRATED: "migrated",
    libvirt.VIR_DOMAIN_RUNNING_RESTORED: "restored",
    libvirt.VIR_DOMAIN_RUNNING_FROM_SNAPSHOT: "from_snapshot",
    libvirt.VIR_DOMAIN_RUNNING_UNPAUSED: "unpaused",
    libvirt.VIR_DOMAIN_RUNNING_MIGRATION_CANCELED: "migration_canceled",
    libvirt.VIR_DOMAIN_RUNNING_SAVE_CANCELED: "save_canceled",
    libvirt.VIR_DOMAIN_RUNNING_WAKEUP: "wakeup",
    libvirt.VIR_DOMAIN_RUNNING_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_RUNNING_POSTCOPY: "postcopy",
    libvirt.VIR_DOMAIN_RUNNING_POSTCOPY_FAILED: "postcopy_failed",
}

_SHUTOFF_REASONS = {
    libvirt.VIR_DOMAIN_SHUTOFF_UNKNOWN: "unknown",
    libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED: "destroyed",
    libvirt.VIR_DOMAIN_SHUTOFF_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_SHUTOFF_MIGRATED: "migrated",
    libvirt.VIR_DOMAIN_SHUTOFF_SAVED: "saved",
    libvirt.VIR_DOMAIN_SHUTOFF_FAILED: "failed",
    libvirt.VIR_DOMAIN_SHUTOFF_FROM_SNAPSHOT: "from_snapshot",
    libvirt.VIR_DOMAIN_SHUTOFF_DAEMON: "daemon",
}

_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: VmState.RUNNING,  # briefly, while QEMU starts
    libvirt.VIR_DOMAIN_RUNNING: VmState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: VmState.RUNNING,  # waiting on I/O: still running
    libvirt.VIR_DOMAIN_PAUSED: VmState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: VmState.SHUTTING_DOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: VmState.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: VmState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: VmState.SUSPENDED,
}

_REASONS = {
    libvirt.VIR_DOMAIN_RUNNING: _RUNNING_REASONS,
    libvirt.VIR_DOMAIN_PAUSED: _PAUSED_REASONS,
    libvirt.VIR_DOMAIN_SHUTOFF: _SHUTOFF_REASONS,
}

LIFECYCLE_EVENTS = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "defined",
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "undefined",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "started",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "suspended",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "resumed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "pmsuspended",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "crashed",
}

_EVENT_DETAILS = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: ("added", "updated", "renamed", "from_snapshot"),
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: ("removed", "renamed"),
    libvirt.VIR_DOMAIN_EVENT_STARTED: ("booted", "migrated", "restored", "from_snapshot",
                                       "wakeup"),
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: ("paused", "migrated", "io_error", "watchdog",
                                         "restored", "from_snapshot", "api_error", "postcopy",
                                         "postcopy_failed"),
    libvirt.VIR_DOMAIN_EVENT_RESUMED: ("unpaused", "migrated", "from_snapshot", "postcopy",
                                       "postcopy_failed"),
    libvirt.VIR_DOMAIN_EVENT_STOPPED: ("shutdown", "destroyed", "crashed", "migrated", "saved",
                                       "failed", "from_snapshot"),
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: ("finished", "guest", "host"),
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: ("memory", "disk"),
    libvirt.VIR_DOMAIN_EVENT_CRASHED: ("panicked", "crashloaded"),
}


def vm_state(state: int, reason: int) -> tuple[VmState, str]:
    """A domain's libvirt (state, reason) as Overt's state and a reason word."""
    mapped = _STATES.get(state, VmState.CRASHED)
    words = _REASONS.get(state, {})
    word = words.get(reason, "unknown" if words else "")
    if mapped is VmState.PAUSED and reason in _PAUSED_ERROR_REASONS:
        mapped = VmState.PAUSED_ERROR
    return mapped, word


def event_detail(event: int, detail: int) -> str:
    """libvirt's lifecycle event and detail as words, e.g. "stopped/shutdown"."""
    if event == REBOOTED:
        return "rebooted"
    name = LIFECYCLE_EVENTS.get(event, f"event{event}")
    details = _EVENT_DETAILS.get(event, ())
    word = details[detail] if 0 <= detail < len(details) else str(detail)
    return f"{name}/{word}"


REBOOTED = -1  # libvirt's separate reboot event, carried like a lifecycle event

_IMPLIED_BY_EVENT = {
    libvirt.VIR_DOMAIN_EVENT_STARTED: VmState.RUNNING,
    libvirt.VIR_DOMAIN_EVENT_RESUMED: VmState.RUNNING,
    REBOOTED: VmState.RUNNING,
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: VmState.SHUTTING_DOWN,
    libvirt.VIR_DOMAIN_EVENT_CRASHED: VmState.CRASHED,
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: VmState.SUSPENDED,
}
_PAUSED_ERROR_DETAILS = frozenset({
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR,
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED_WATCHDOG,
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED_API_ERROR,
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY_FAILED,
})


def state_after_event(event: int, detail: int, now: VmState | None) -> VmState:
    """The state a lifecycle event reports, given the state read just after it.

    `now` may already be later than the event (events queue up), so the event
    decides where it implies a state; `now` is None when the domain is gone.
    """
    if event == libvirt.VIR_DOMAIN_EVENT_STARTED and \
            detail == libvirt.VIR_DOMAIN_EVENT_STARTED_MIGRATED:
        # An incoming migration: the copy waits paused until the source hands it over
        # (then "resumed/migrated"); it must not be taken for the VM running here.
        return VmState.PAUSED
    implied = _IMPLIED_BY_EVENT.get(event)
    if implied is not None:
        return implied
    if event == libvirt.VIR_DOMAIN_EVENT_SUSPENDED:
        if now in (VmState.PAUSED, VmState.PAUSED_ERROR):
            return now
        return VmState.PAUSED_ERROR if detail in _PAUSED_ERROR_DETAILS else VmState.PAUSED
    if event == libvirt.VIR_DOMAIN_EVENT_STOPPED and detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED:
        return VmState.SUSPENDED  # its memory is in a file (vm.save): suspended, not gone
    if now is None:
        return VmState.GONE
    if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
        return VmState.SHUTOFF
    return now
