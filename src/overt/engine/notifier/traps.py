"""The engine's trap (`overtEngineEvent`) and its varbinds: one layout for every event.

Under `ENTERPRISE.2` (overtEngine), beside the node's `ENTERPRISE.1`:
`.2.0.1` is the notification, `.2.1.N.0` its objects (docs/snmp.md has the table). Every
object is always sent (empty when the event names no such object), so a receiver can rely
on the positions.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from overt.engine.notifier.events import SEVERITIES
from overt.snmp.oids import ENTERPRISE
from overt.snmp.trap import VarBind

ENGINE = (*ENTERPRISE, 2)  # overtEngine
ENGINE_EVENT = (*ENGINE, 0, 1)  # overtEngineEvent
OBJECTS = (*ENGINE, 1)

EVENT_ID, EVENT_NAME, EVENT_CODE, SEVERITY, MESSAGE, TIME = 1, 2, 3, 4, 5, 6
VM_ID, VM_NAME, HOST_ID, HOST_NAME, STORAGE_DOMAIN_ID, STORAGE_DOMAIN_NAME = 7, 8, 9, 10, 11, 12


@dataclass(frozen=True)
class EventFacts:
    """What a trap tells of one audit event (names looked up when it is sent)."""

    event_id: int
    event_name: str  # the subscribed oVirt event
    code: int
    severity: str
    message: str
    time: dt.datetime
    vm_id: str = ""
    vm_name: str = ""
    host_id: str = ""
    host_name: str = ""
    storage_domain_id: str = ""
    storage_domain_name: str = ""


def _obj(column: int) -> tuple[int, ...]:
    return (*OBJECTS, column, 0)


def varbinds(facts: EventFacts) -> list[VarBind]:
    when = facts.time.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return [
        (_obj(EVENT_ID), "u", str(facts.event_id)),
        (_obj(EVENT_NAME), "s", facts.event_name),
        (_obj(EVENT_CODE), "i", str(facts.code)),
        (_obj(SEVERITY), "i", str(SEVERITIES.get(facts.severity, 0))),
        (_obj(MESSAGE), "s", facts.message),
        (_obj(TIME), "s", when),
        (_obj(VM_ID), "s", facts.vm_id),
        (_obj(VM_NAME), "s", facts.vm_name),
        (_obj(HOST_ID), "s", facts.host_id),
        (_obj(HOST_NAME), "s", facts.host_name),
        (_obj(STORAGE_DOMAIN_ID), "s", facts.storage_domain_id),
        (_obj(STORAGE_DOMAIN_NAME), "s", facts.storage_domain_name),
    ]
