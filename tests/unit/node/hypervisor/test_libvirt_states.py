"""libvirt states, reasons and lifecycle events mapped to Overt's VmState."""

from __future__ import annotations

import libvirt
import pytest

from overt.node.hypervisor.libvirt_states import (
    LIFECYCLE_EVENTS,
    REBOOTED,
    event_detail,
    state_after_event,
    vm_state,
)
from overt.protocol.host import VmState

ALL_STATES = range(libvirt.VIR_DOMAIN_NOSTATE, libvirt.VIR_DOMAIN_PMSUSPENDED + 1)


@pytest.mark.parametrize(("state", "reason", "expected"), [
    (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_BOOTED, (VmState.RUNNING, "booted")),
    (libvirt.VIR_DOMAIN_BLOCKED, 0, (VmState.RUNNING, "")),
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER, (VmState.PAUSED, "user")),
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_MIGRATION,
     (VmState.PAUSED, "migration")),
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_UNKNOWN,  # KVM emulation failure
     (VmState.PAUSED_ERROR, "unknown")),
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_IOERROR,
     (VmState.PAUSED_ERROR, "io_error")),
    (libvirt.VIR_DOMAIN_SHUTDOWN, 0, (VmState.SHUTTING_DOWN, "")),
    (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED,
     (VmState.SHUTOFF, "destroyed")),
    (libvirt.VIR_DOMAIN_CRASHED, 0, (VmState.CRASHED, "")),
    (libvirt.VIR_DOMAIN_PMSUSPENDED, 0, (VmState.SUSPENDED, "")),
    (99, 0, (VmState.CRASHED, "")),
])
def test_states_and_reasons(state: int, reason: int, expected: tuple[VmState, str]) -> None:
    assert vm_state(state, reason) == expected


@pytest.mark.parametrize("state", ALL_STATES)
@pytest.mark.parametrize("reason", range(16))
def test_every_state_and_reason_maps_to_something(state: int, reason: int) -> None:
    mapped, word = vm_state(state, reason)
    assert isinstance(mapped, VmState) and mapped is not VmState.GONE
    assert word.isidentifier() or word == ""


@pytest.mark.parametrize(("event", "detail", "now", "expected"), [
    (libvirt.VIR_DOMAIN_EVENT_STARTED, 0, VmState.PAUSED, VmState.RUNNING),
    (libvirt.VIR_DOMAIN_EVENT_STARTED, 0, None, VmState.RUNNING),
    (libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_STARTED_MIGRATED,
     VmState.RUNNING, VmState.PAUSED),  # an incoming migration runs once handed over
    (libvirt.VIR_DOMAIN_EVENT_RESUMED, libvirt.VIR_DOMAIN_EVENT_RESUMED_MIGRATED,
     VmState.RUNNING, VmState.RUNNING),  # ... which is this event
    (libvirt.VIR_DOMAIN_EVENT_RESUMED, 0, VmState.RUNNING, VmState.RUNNING),
    (REBOOTED, 0, VmState.RUNNING, VmState.RUNNING),
    (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED,
     VmState.PAUSED_ERROR, VmState.PAUSED_ERROR),  # paused without being asked
    (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED,
     VmState.RUNNING, VmState.PAUSED),  # already resumed when read
    (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR,
     None, VmState.PAUSED_ERROR),
    (libvirt.VIR_DOMAIN_EVENT_SHUTDOWN, 0, None, VmState.SHUTTING_DOWN),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, 0, None, VmState.GONE),  # transient: gone
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED, None,
     VmState.SUSPENDED),  # its memory went to a file
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, 0, VmState.SHUTOFF, VmState.SHUTOFF),  # persistent
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, 0, VmState.RUNNING, VmState.SHUTOFF),  # restarted since
    (libvirt.VIR_DOMAIN_EVENT_UNDEFINED, 0, None, VmState.GONE),
    (libvirt.VIR_DOMAIN_EVENT_DEFINED, 0, VmState.SHUTOFF, VmState.SHUTOFF),
    (libvirt.VIR_DOMAIN_EVENT_CRASHED, 0, None, VmState.CRASHED),
])
def test_state_after_an_event(event: int, detail: int, now: VmState | None,
                              expected: VmState) -> None:
    assert state_after_event(event, detail, now) is expected


def test_event_details_read_as_words() -> None:
    assert event_detail(libvirt.VIR_DOMAIN_EVENT_STOPPED,
                        libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN) == "stopped/shutdown"
    assert event_detail(libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
                        libvirt.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR) == "suspended/io_error"
    assert event_detail(REBOOTED, 0) == "rebooted"
    assert event_detail(libvirt.VIR_DOMAIN_EVENT_STARTED, 42) == "started/42"
    assert event_detail(77, 0) == "event77/0"
    assert len(LIFECYCLE_EVENTS) == 9
