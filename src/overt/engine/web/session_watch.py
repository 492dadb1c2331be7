"""Long-lived connections of a portal session (event stream, console) end with the session.

Sign-out in this process ends them at once (`SessionWatch.end`); a session that ends
any other way (expiry, sign-out through another API process) is noticed within
`RECHECK_S`, when the database is asked again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from overt.engine.db.database import Database
from overt.engine.web import sessions

RECHECK_S = 2.0


class SessionWatch:
    """Who is waiting for which session to end; one per API process."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = {}

    @contextlib.contextmanager
    def watch(self, digest: str) -> Iterator[asyncio.Event]:
        ended = asyncio.Event()
        self._waiting.setdefault(digest, set()).add(ended)
        try:
            yield ended
        finally:
            waiting = self._waiting.get(digest)
            if waiting is not None:
                waiting.discard(ended)
                if not waiting:
                    del self._waiting[digest]

    def end(self, digest: str) -> None:
        """The session ended (sign-out): everything it opened closes now."""
        for ended in self._waiting.get(digest, set()):
            ended.set()


async def still_signed_in(db: Database, cookie: str | None) -> bool:
    async with db.transaction() as session:
        return await sessions.find_session(session, cookie, touch=False) is not None


async def until_signed_out(db: Database, watch: SessionWatch, cookie: str,
                           recheck_s: float = RECHECK_S) -> None:
    """Return when the session behind `cookie` has ended."""
    with watch.watch(sessions.digest(cookie)) as ended:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(recheck_s):
                    await ended.wait()
            if ended.is_set() or not await still_signed_in(db, cookie):
                return
