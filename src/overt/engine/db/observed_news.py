"""PostgreSQL's LISTEN/NOTIFY carrying the monitor's word "these VMs changed" to the jobs
of every engine process.

A job waits for the status the monitor observes (`jobs.observe`). In the monitor's own
process the word is a call (`ObservedChanges`); a worker in another process, or beside
another monitor (monitors share the nodes by partition), hears it here instead of
reading its VM over and over. Notifications are a hint, never the record: a lost one
(the database restarting, the listener reconnecting) costs a waiting job only its next
look at the database. SQLite has one engine process, so it needs none of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable

import psycopg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from overt.engine.db.database import Database

log = logging.getLogger(__name__)

CHANNEL = "overt_observed_vms"
APPLICATION = "overt observed news"  # the listeners' name in pg_stat_activity
EVERY_VM = "*"  # news that may touch any VM (a host's whole state applied)
_PAYLOAD_MAX = 7900  # PostgreSQL's limit is 8000 bytes
_RECONNECT_S = (0.5, 1.0, 2.0, 5.0)

Heard = Callable[[list[uuid.UUID] | None], None]  # the VMs, or None for every VM


def payloads(vm_ids: Iterable[uuid.UUID] | None) -> list[str]:
    """The notifications' payloads: VM ids comma-separated, each under the size limit."""
    if vm_ids is None:
        return [EVERY_VM]
    said, current = [], ""
    for vm_id in sorted(str(v) for v in vm_ids):
        if current and len(current) + 1 + len(vm_id) > _PAYLOAD_MAX:
            said.append(current)
            current = ""
        current = f"{current},{vm_id}" if current else vm_id
    return said + ([current] if current else [])


def parse(payload: str) -> list[uuid.UUID] | None:
    """A payload's VM ids (None: every VM); what is not an id is skipped."""
    if payload == EVERY_VM:
        return None
    ids = []
    for part in payload.split(","):
        with contextlib.suppress(ValueError):
            ids.append(uuid.UUID(part))
    return ids


class Announcer:
    """The monitor's side: VM ids gathered while the previous notification was being
    sent go out together, so a busy monitor sends a few notifications, not one per
    event."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._ids: set[uuid.UUID] = set()
        self._every = False
        self._wake = asyncio.Event()

    def changed(self, vm_ids: Iterable[uuid.UUID] | None = None) -> None:
        if vm_ids is None:
            self._every = True
        else:
            self._ids.update(vm_ids)
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            ids, every = self._ids, self._every
            self._ids, self._every = set(), False
            try:
                async with self.db.transaction() as session:  # sent when it commits
                    for payload in payloads(None if every else ids):
                        await session.execute(select(func.pg_notify(CHANNEL, payload)))
            except Exception as exc:  # a hint only: waiting jobs look again by themselves
                log.warning("could not tell other engine processes which VMs changed: %s",
                            exc)
                await asyncio.sleep(1.0)


def _conninfo(url: str) -> str:
    """libpq's form of the engine's SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def listen(url: str, heard: Heard) -> None:
    """The jobs' side: hear the monitors' notifications for ever, reconnecting after a
    lost connection. After (re)connecting everyone is woken once: what was said while
    nobody listened is not lost, only late."""
    attempt = 0
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                    _conninfo(url), autocommit=True, application_name=APPLICATION) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                attempt = 0
                heard(None)
                async for notification in conn.notifies():
                    heard(parse(notification.payload))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            delay = _RECONNECT_S[min(attempt, len(_RECONNECT_S) - 1)]
            attempt += 1
            log.info("not hearing which VMs changed (%s); listening again in %g s", exc,
                     delay)
            await asyncio.sleep(delay)
