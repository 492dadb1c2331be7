"""`db_url`: an engine database migrated to the current schema, once on SQLite and once
on PostgreSQL (tests marked pg)."""

from __future__ import annotations

from pathlib import Path

import pytest

from overt.engine.db import migrate


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        url = str(request.getfixturevalue("fresh_postgres_url"))
    else:
        url = f"sqlite:///{tmp_path}/engine.db"
    migrate.upgrade(url)
    return url
