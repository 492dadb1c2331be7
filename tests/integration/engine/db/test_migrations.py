"""The Alembic revisions build exactly the schema the tables declare, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from overt.engine.db import migrate
from overt.engine.db.database import sync_url
from overt.engine.db.tables import Base


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def test_migrations_match_the_tables(backend: str, tmp_path: Path,
                                     request: pytest.FixtureRequest) -> None:
    url = (str(request.getfixturevalue("fresh_postgres_url")) if backend == "postgresql"
           else f"sqlite:///{tmp_path}/engine.db")
    migrate.upgrade(url)
    migrate.upgrade(url)  # a second start finds nothing to do
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert differences == []
