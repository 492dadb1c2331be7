"""`overt engine`: settings it refuses before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import overt


@pytest.mark.slow  # a new Python process
def test_a_part_alone_on_sqlite_is_refused_with_what_to_do(tmp_path: Path) -> None:
    result = overt("engine", "worker", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "needs PostgreSQL" in result.stderr and "--db postgresql+psycopg://" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "engine.db").exists()
