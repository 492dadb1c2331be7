"""The fast lane's SQLite calls run in the event loop's own thread.

aiosqlite runs every statement in a thread of its own and hands the result back through
the event loop: a thread switch and a loop wake-up per statement, which is most of what a
fast-lane test spends next to SQLAlchemy itself. The lane's databases are files in memory
(/dev/shm), its transactions take turns within the one process that uses them
(`Database.transaction`), so a statement never waits on a lock and running it at once is
safe and a fifth to a quarter cheaper. Only the fast lane does this: the whole suite
(CI) runs the same tests on aiosqlite as it is, as the engine does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiosqlite
import aiosqlite.core

_installed = False


def install() -> None:
    """Make every aiosqlite connection opened from now on run its statements inline."""
    global _installed
    if _installed:
        return
    _installed = True
    connect = aiosqlite.connect

    def connect_inline(*args: Any, **kwargs: Any) -> aiosqlite.Connection:
        kwargs.setdefault("check_same_thread", False)  # opened by aiosqlite's thread
        return connect(*args, **kwargs)

    async def execute_inline(self: aiosqlite.Connection, fn: Callable[..., Any],
                             *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    aiosqlite.connect = connect_inline  # type: ignore[assignment]
    aiosqlite.core.Connection._execute = execute_inline  # type: ignore[method-assign]
