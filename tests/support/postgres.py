"""A PostgreSQL database of one test run (or benchmark) of its own."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

from overt.system.postgres import create_database, drop_database, ensure_postgresql


@contextlib.contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """Start PostgreSQL if it does not answer, make a database and a role named
    PREFIX_<random> with a random password, give its URL, drop both on exit."""
    ensure_postgresql()
    name = owner = f"{prefix}_{secrets.token_hex(4)}"
    try:  # a run stopped while the database is being made leaves none behind either
        yield create_database(name, owner, secrets.token_urlsafe(16))
    finally:
        drop_database(name, owner)
