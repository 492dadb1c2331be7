"""Numbering a node's events: one boot id per agent run (ordered by time), seq from 1."""

from __future__ import annotations

import uuid

from overt.protocol import EventEnvelope
from overt.protocol.boots import new_boot_id
from overt.protocol.events import Event, StatsSample


class EventSequencer:
    """Wraps events in envelopes: sequenced ones get 1, 2, 3, ...; stats get no number."""

    def __init__(self, host_uuid: uuid.UUID, boot_id: uuid.UUID | None = None) -> None:
        self.host_uuid = host_uuid
        self.boot_id = boot_id or new_boot_id()
        self.last_seq = 0

    def sequenced(self, event: Event) -> EventEnvelope:
        self.last_seq += 1
        return EventEnvelope(host_uuid=self.host_uuid, boot_id=self.boot_id, seq=self.last_seq,
                             event=event)

    def lossy(self, event: StatsSample) -> EventEnvelope:
        return EventEnvelope(host_uuid=self.host_uuid, boot_id=self.boot_id, seq=None,
                             event=event)
