"""The notifier's cursor on SQLite and PostgreSQL: events in id order, each sent once even
with two notifiers at work, an id not yet committed waited for, a rolled-back one skipped."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from overt.engine import audit
from overt.engine.db.database import Database
from overt.engine.db.tables import AuditEvent, NotifierCursor, User
from overt.engine.notifier.service import Delivery, Notifier, _cursor
from overt.engine.secrets import Secret, SecretBox
from overt.engine.services import notifications
from overt.engine.services.notifications import ManagerInput
from overt.snmp.trap import Credentials, VarBind


class Sent:
    """A stand-in for snmptrap that records the audit event id of each trap."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    async def __call__(self, host: str, port: int, creds: Credentials, oid: tuple[int, ...],
                       binds: list[VarBind]) -> None:
        self.ids.append(int(binds[0][2]))


@pytest.fixture
async def subscribed(db: Database, tmp_path: Path) -> SecretBox:
    box = SecretBox(tmp_path)
    async with db.transaction() as session:
        user = User(id=uuid.uuid4(), user_name=f"ops-{uuid.uuid4().hex[:6]}@internal")
        session.add(user)
        await session.flush()
        await notifications.add_manager(session, box, ManagerInput(
            name="nms", address="127.0.0.1", port=1162, community=Secret("c")), user)
        await notifications.subscribe(session, user.id, event="vm_down_error", method="snmp",
                                      address=None, by=user)
    return box


async def _record(db: Database, count: int, *, code: int = audit.VM_DOWN) -> list[int]:
    ids = []
    for i in range(count):
        async with db.transaction() as session:
            event = audit.record(session, f"VM vm-{i} is down", code=code)
            await session.flush()
            ids.append(event.id)
    return ids


async def _record_with_id(db: Database, event_id: int) -> None:
    async with db.transaction() as session:
        session.add(AuditEvent(id=event_id, description="late", code=audit.VM_DOWN))


async def test_two_notifiers_send_each_event_once_in_order(db: Database,
                                                          subscribed: SecretBox) -> None:
    sent_a, sent_b = Sent(), Sent()
    first = Notifier(db, subscribed, send=sent_a)
    second = Notifier(db, subscribed, send=sent_b)
    assert await first.notify_pending() == 0
    ids = await _record(db, 12)
    await _record(db, 3, code=audit.VM_STARTED)  # nobody subscribed: taken, not sent
    taken = await asyncio.gather(first.notify_pending(), second.notify_pending())
    assert sum(taken) == 15
    assert sorted(sent_a.ids + sent_b.ids) == ids
    assert sent_a.ids == sorted(sent_a.ids) and sent_b.ids == sorted(sent_b.ids)
    assert await Notifier(db, subscribed, send=sent_a).notify_pending() == 0


async def test_a_missing_id_is_waited_for_then_skipped_once_given_up(
        db: Database, subscribed: SecretBox) -> None:
    sent = Sent()
    notifier = Notifier(db, subscribed, send=sent, gap_grace_s=3600)
    await notifier.notify_pending()
    [last] = await _record(db, 1)
    assert await notifier.notify_pending() == 1
    await _record_with_id(db, last + 2)  # last + 1 is still in an open transaction
    assert await notifier.notify_pending() == 0
    await _record_with_id(db, last + 1)  # ... which commits
    assert await notifier.notify_pending() == 2
    assert sent.ids == [last, last + 1, last + 2]

    await _record_with_id(db, last + 4)  # last + 3 was rolled back: never appears
    impatient = Notifier(db, subscribed, send=sent, gap_grace_s=0)
    assert await impatient.notify_pending() == 1
    assert sent.ids[-1] == last + 4


async def test_two_notifiers_starting_together_make_the_cursor_once(db: Database) -> None:
    """Both find no cursor and make it: the second one's insert waits for the first's commit
    and then keeps its row (it used to fail with a unique violation, a traceback in the log
    of every engine whose monitors started together)."""
    first_read = asyncio.Event()
    release = asyncio.Event()

    async def first() -> int:
        async with db.transaction() as session:
            last = await _cursor(session)
            first_read.set()
            await release.wait()
            return last

    async def second() -> int:
        async with db.transaction() as session:
            return await _cursor(session)

    one = asyncio.create_task(first())
    await first_read.wait()
    two = asyncio.create_task(second())
    await asyncio.sleep(0.5)  # the second reaches its insert while the first holds its row
    release.set()
    assert await one == await two == 0
    async with db.transaction() as session:
        assert (await session.execute(select(func.count()).select_from(NotifierCursor))
                ).scalar_one() == 1


class CountingNotifier(Notifier):
    """Counts the cursor's moves (a transaction each)."""

    claims = 0

    async def _claim(self, last: int, run: list[AuditEvent]) -> list[Delivery] | None:
        self.claims += 1
        return await super()._claim(last, run)


async def test_events_without_subscribers_are_claimed_together(db: Database,
                                                               subscribed: SecretBox) -> None:
    """A busy engine's audit log (VMs started, hosts up) costs a move of the cursor per
    subscribed event, not one per event; the subscribed ones are still sent in order."""
    sent = Sent()
    notifier = CountingNotifier(db, subscribed, send=sent)
    await notifier.notify_pending()
    await _record(db, 40, code=audit.VM_STARTED)
    first = await _record(db, 1)
    await _record(db, 40, code=audit.VM_STARTED)
    second = await _record(db, 1)
    await _record(db, 40, code=audit.VM_STARTED)
    assert await notifier.notify_pending() == 122
    assert sent.ids == first + second
    assert notifier.claims == 3  # up to the first subscribed, up to the second, the rest
    async with db.transaction() as session:
        assert await _cursor(session) == second[0] + 40
