"""The time certificates are checked and issued against, as one object passed down.

Real time, moved by `offset_s`: set at start from the settings (OVERT_CLOCK_OFFSET_S,
OVERT_NODE_CLOCK_OFFSET_S) so that tests can run an engine and nodes years ahead and
watch certificates expire and renew, without patching any library.
"""

from __future__ import annotations

import datetime as dt


class Clock:
    def __init__(self, offset_s: float = 0.0) -> None:
        self.offset_s = offset_s

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.offset_s)

    def advance(self, delta: dt.timedelta) -> None:
        self.offset_s += delta.total_seconds()
