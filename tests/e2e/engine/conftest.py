"""An engine for API tests (no nodes): SQLite by default, PostgreSQL for tests marked pg."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import ovirtsdk4 as sdk
import pytest

from tests.conftest import postgres_database
from tests.support.engine import RunningEngine, start_engine
from tests.support.no_nodes import NoNodes


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def api_engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[RunningEngine]:
    """An engine with no nodes, on the embedded SQLite and on a PostgreSQL database of its own."""
    with contextlib.ExitStack() as stack:
        db = stack.enter_context(postgres_database()) if request.param == "postgresql" else None
        engine = start_engine(tmp_path_factory.mktemp("engine"), db=db, transport=NoNodes())
        yield engine
        engine.stop()


@pytest.fixture
def connection(api_engine: RunningEngine) -> Iterator[sdk.Connection]:
    conn = sdk.Connection(url=api_engine.url, username="admin@internal",
                          password=api_engine.password, ca_file=str(api_engine.ca_file))
    yield conn
    conn.close()


def engine_data(engine: RunningEngine) -> Path:
    return engine.runtime.settings.data_dir
