"""`overt user add|password|unlock` for internal users, as an administrator and a user run
them: create a user, the user changes their password, an administrator ends a lockout."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from overt.cli.main import app
from tests.support.engine import RunningEngine, start_engine
from tests.support.no_nodes import NoNodes


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    running = start_engine(tmp_path_factory.mktemp("engine"), transport=NoNodes(),
                           signin_failures=2)
    yield running
    running.stop()


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


def cli(engine: RunningEngine, *args: str, user: str = "admin@internal",
        password: str | None = None) -> Done:
    """`overt ARGS` as a user runs it, in this process (a child's start-up costs seconds)."""
    env = {"OVERT_URL": engine.url, "OVERT_USER": user,
           "OVERT_PASSWORD": password or engine.password, "OVERT_CA_FILE": str(engine.ca_file)}
    result = CliRunner().invoke(app, list(args), env=env)
    return Done(result.exit_code, result.stdout, result.stderr)


def _token(engine: RunningEngine, user: str, password: str) -> httpx.Response:
    tls = ssl.create_default_context(cafile=str(engine.ca_file))
    return httpx.post(engine.url.replace("/api", "/sso/oauth/token"), verify=tls, timeout=30,
                      data={"grant_type": "password", "scope": "ovirt-app-api",
                            "username": user, "password": password})


def test_add_change_lock_and_unlock(engine: RunningEngine, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text("Ginger-Tea-First-Pass-1\n")
    second.write_text("Ginger-Tea-Second-Pass-2\n")
    added = cli(engine, "user", "add", "gina@internal", "--new-password-file", str(first))
    assert added.returncode == 0, added.stderr
    assert "user gina@internal added" in added.stdout
    assert "Ginger-Tea-First-Pass-1" not in added.stdout + added.stderr

    changed = cli(engine, "user", "password", "--new-password-file", str(second),
                  user="gina@internal", password="Ginger-Tea-First-Pass-1")
    assert changed.returncode == 0, changed.stderr
    assert "password of gina@internal changed" in changed.stdout
    assert _token(engine, "gina@internal", "Ginger-Tea-Second-Pass-2").status_code == 200

    for guess in ("guess-One-1", "guess-Two-2"):
        assert _token(engine, "gina@internal", guess).status_code == 400
    locked = _token(engine, "gina@internal", "Ginger-Tea-Second-Pass-2")
    assert locked.status_code == 429 and "account locked until" in locked.json()["error"]
    unlocked = cli(engine, "user", "unlock", "gina")
    assert unlocked.returncode == 0, unlocked.stderr
    assert "user gina@internal unlocked" in unlocked.stdout
    assert _token(engine, "gina@internal", "Ginger-Tea-Second-Pass-2").status_code == 200

    refused = cli(engine, "user", "unlock", "gina", user="gina@internal",
                  password="Ginger-Tea-Second-Pass-2")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "HTTP 403" in refused.stderr or "no user" in refused.stderr
