"""An engine for API tests (no nodes): SQLite by default, PostgreSQL for tests marked pg."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ovirtsdk4 as sdk
import pytest

from tests.support.engine import RunningEngine, start_engine
from tests.support.no_nodes import NoNodes


@pytest.fixture(scope="module")
def api_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    engine = start_engine(tmp_path_factory.mktemp("engine"), transport=NoNodes())
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
