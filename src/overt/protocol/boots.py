"""Boot ids: one per agent run, ordered by time, so late news of an earlier run is known.

A boot id has the layout of a version 7 UUID: the run's start in Unix milliseconds
in its first 48 bits, then random bits. With competing monitors, an event of an
earlier run may reach the engine after the first event of a later run; comparing
the two boot ids tells which run is the newer one. Boot ids of another layout
(older agents) carry no time: nothing can be said of their order.
"""

from __future__ import annotations

import secrets
import time
import uuid

_MS_BITS = 48
_RANDOM_A_BITS = 12
_RANDOM_B_BITS = 62


def new_boot_id(started_at: float | None = None) -> uuid.UUID:
    """A fresh boot id for a run that started at `started_at` (Unix time; default now)."""
    ms = int((time.time() if started_at is None else started_at) * 1000) & ((1 << _MS_BITS) - 1)
    random_a = secrets.randbits(_RANDOM_A_BITS)
    random_b = secrets.randbits(_RANDOM_B_BITS)
    value = (ms << 80) | (0x7 << 76) | (random_a << 64) | (0b10 << 62) | random_b
    return uuid.UUID(int=value)


def boot_started_ms(boot_id: uuid.UUID) -> int | None:
    """When the run of `boot_id` started (Unix ms), if its id says so."""
    return boot_id.int >> 80 if boot_id.version == 7 else None


def is_earlier_boot(boot_id: uuid.UUID, than: uuid.UUID) -> bool:
    """True when `boot_id` is known to belong to a run that started before run `than`."""
    mine, theirs = boot_started_ms(boot_id), boot_started_ms(than)
    return mine is not None and theirs is not None and mine < theirs
