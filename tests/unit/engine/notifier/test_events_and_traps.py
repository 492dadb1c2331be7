"""The notifiable events Overt raises and the trap's fixed varbind layout."""

from __future__ import annotations

import datetime as dt

import ovirtsdk4.types as types
import pytest

from overt.engine import audit
from overt.engine.notifier.events import NOTIFIABLE, check_event, events_of
from overt.engine.notifier.traps import ENGINE_EVENT, EventFacts, varbinds
from overt.snmp.oids import oid_text


def test_every_event_is_an_ovirt_notifiable_event() -> None:
    ovirt = {e.value for e in types.NotifiableEvent}
    assert set(NOTIFIABLE) <= ovirt
    assert {"host_failure", "vm_down_error", "system_deactivated_storage_domain"} <= \
        set(NOTIFIABLE)


def test_codes_map_to_their_events() -> None:
    assert events_of(audit.HOST_NON_RESPONSIVE) == ["host_failure"]
    assert events_of(audit.VM_DOWN) == ["vm_down_error"]
    assert events_of(audit.VM_LOST) == ["vm_down_error"]
    assert events_of(audit.VM_STARTED) == []  # a user's start is nobody's alarm


@pytest.mark.parametrize("name", ["irs_failure", "dwh_error", "nonsense", ""])
def test_an_event_overt_does_not_raise_is_refused_with_the_list(name: str) -> None:
    with pytest.raises(ValueError, match="host_failure, host_install_failed"):
        check_event(name)


def test_the_trap_always_carries_every_object_in_order() -> None:
    facts = EventFacts(event_id=42, event_name="host_failure", code=12, severity="error",
                       message="Host n1 is not responding",
                       time=dt.datetime(2026, 11, 30, 12, 0, 1, tzinfo=dt.UTC),
                       host_id="h-1", host_name="n1")
    binds = varbinds(facts)
    assert oid_text(ENGINE_EVENT) == ".1.3.6.1.4.1.99999.2.0.1"
    assert [oid_text(oid) for oid, _, _ in binds] == [
        f".1.3.6.1.4.1.99999.2.1.{n}.0" for n in range(1, 13)]
    values = [(kind, value) for _, kind, value in binds]
    assert values[:6] == [("u", "42"), ("s", "host_failure"), ("i", "12"), ("i", "3"),
                          ("s", "Host n1 is not responding"),
                          ("s", "2026-11-30T12:00:01.000000Z")]
    assert values[6:] == [("s", ""), ("s", ""), ("s", "h-1"), ("s", "n1"), ("s", ""), ("s", "")]
