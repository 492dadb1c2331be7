"""Attack tests: each one plays an attacker against a real engine part and checks it fails.

The engine databases of the integration tests (SQLite, and PostgreSQL for tests marked pg)."""

from __future__ import annotations

from tests.integration.engine.conftest import db, db_url

__all__ = ["db", "db_url"]
