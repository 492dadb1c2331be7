"""A monitor that is closing leaves no batch task behind: an event delivered after
`close()` is refused with the reason, and nothing is left running when the loop ends."""

from __future__ import annotations

import asyncio
import uuid
from typing import cast

import pytest

from overt.engine.db.database import Database
from overt.engine.monitor.apply import Gaps
from overt.engine.monitor.batch import EventBatcher
from overt.protocol.envelope import EventEnvelope
from overt.protocol.events import Heartbeat


async def test_an_event_delivered_after_close_is_refused_and_starts_no_task() -> None:
    batcher = EventBatcher(cast(Database, None))  # nothing reaches the database here
    await batcher.close()
    before = asyncio.all_tasks()
    envelope = EventEnvelope(host_uuid=uuid.uuid4(), boot_id=uuid.uuid4(), seq=1,
                             event=Heartbeat(vm_count=0, free_memory_mib=1, uptime_s=1.0))
    with pytest.raises(RuntimeError, match="the monitor is stopping"):
        await batcher.apply(envelope, Gaps.WAIT)
    assert asyncio.all_tasks() == before
