"""Results of mutating commands by idempotency key, kept on disk so a resent command
(the engine retrying a job step, even across an agent restart) never acts twice.

Only successes are kept: a failed command did not act, so acting again is the retry.
A key still being executed makes its twin wait for the same result.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from overt.node.errors import bad_request
from overt.protocol import CommandEnvelope, Reply

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE_S = 7 * 24 * 3600.0
PRUNE_EVERY_S = 3600.0


def command_fingerprint(envelope: CommandEnvelope) -> str:
    return hashlib.sha256(envelope.command.model_dump_json().encode()).hexdigest()


class IdempotencyStore:
    """A small SQLite file of (key -> first reply); entries older than `max_age_s` go."""

    def __init__(self, path: Path, max_age_s: float = DEFAULT_MAX_AGE_S) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_age_s = max_age_s
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, "
                         "fingerprint TEXT NOT NULL, command TEXT NOT NULL, "
                         "reply TEXT NOT NULL, created REAL NOT NULL)")
        self._in_flight: dict[str, asyncio.Future[Reply]] = {}
        self._last_prune = 0.0
        self.prune()

    def close(self) -> None:
        self._db.close()

    def lookup(self, key: str, fingerprint: str) -> Reply | None:
        """The first reply given under `key`; refuses a key reused for another command."""
        row = self._db.execute("SELECT fingerprint, command, reply FROM results WHERE key = ?",
                               (key,)).fetchone()
        if row is None:
            return None
        if row[0] != fingerprint:
            raise bad_request(f"idempotency key {key!r} was already used for another command "
                              f"({row[1]}); send a new key for a new command")
        return Reply.model_validate_json(row[2])

    def remember(self, key: str, fingerprint: str, command: str, reply: Reply) -> None:
        self._db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?)",
                         (key, fingerprint, command, reply.model_dump_json(), time.time()))
        if time.monotonic() - self._last_prune > PRUNE_EVERY_S:
            self.prune()

    def prune(self, now: float | None = None) -> int:
        """Forget results older than `max_age_s`; return how many went."""
        self._last_prune = time.monotonic()
        cutoff = (now if now is not None else time.time()) - self.max_age_s
        removed = self._db.execute("DELETE FROM results WHERE created < ?", (cutoff,)).rowcount
        if removed:
            log.info("forgot %d command results older than %g s", removed, self.max_age_s)
        return removed

    async def once(self, envelope: CommandEnvelope,
                   act: Callable[[], Awaitable[Reply]]) -> Reply:
        """Run `act` unless this envelope's key already has (or is getting) a result."""
        key = envelope.idempotency_key
        if key is None:
            return await act()
        fingerprint = command_fingerprint(envelope)
        stored = self.lookup(key, fingerprint)
        if stored is not None:
            log.info("command already done; answering with its first result",
                     extra={"job": key})
            return stored.model_copy(update={"request_id": envelope.request_id})
        running = self._in_flight.get(key)
        if running is not None:
            reply = await asyncio.shield(running)
            return reply.model_copy(update={"request_id": envelope.request_id})
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            reply = await act()
            if reply.ok:
                self.remember(key, fingerprint, envelope.command.name, reply)
            future.set_result(reply)
            return reply
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: twins re-raise it, nobody else must
            raise
        finally:
            del self._in_flight[key]
