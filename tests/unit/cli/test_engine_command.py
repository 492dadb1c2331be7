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


@pytest.mark.slow  # a new Python process
def test_netsvc_part_needs_an_address_plan(tmp_path: Path) -> None:
    result = overt("engine", "netsvc", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "needs the address plan" in result.stderr and "--netsvc-file" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # a new Python process
def test_a_bad_address_plan_stops_the_engine_before_it_starts(tmp_path: Path) -> None:
    plan = tmp_path / "netsvc.toml"
    plan.write_text('domain = "example"\n[[networks]]\nname = "ovirtmgmt"\n'
                    'subnet = "10.233.9.0/24"\naddress = "10.233.8.1"\n'
                    'dhcp_range = "10.233.9.100-10.233.9.150"\n'
                    'reserved_range = "10.233.9.10-10.233.9.50"\n')
    result = overt("engine", "--data-dir", str(tmp_path / "data"), "--netsvc-file", str(plan))
    assert result.returncode == 1
    assert "the engine's address 10.233.8.1 is not in 10.233.9.0/24" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "engine.db").exists()
