"""`overt demo` for end-to-end tests: SQLite by default, PostgreSQL for tests marked pg, and
fully managed mode (through RabbitMQ) for tests marked amqp."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import postgres_database, require_root
from tests.support.demo import Demo


def new_demo(db: str | None, bus: str = "direct") -> Demo:
    require_root()
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-demo-test-"))
    base.chmod(0o755)
    return Demo(data_dir=base / "engine", images_dir=base / "images", db=db, bus=bus)


@pytest.fixture(scope="module", params=[
    "sqlite", pytest.param("postgresql", marks=pytest.mark.pg),
    pytest.param("sqlite+amqp", marks=pytest.mark.amqp)])
def demo(request: pytest.FixtureRequest) -> Iterator[Demo]:
    bus = request.getfixturevalue("rabbitmq").admin_url if "amqp" in request.param \
        else "direct"
    with contextlib.ExitStack() as stack:
        db = stack.enter_context(postgres_database()) if request.param == "postgresql" else None
        running = new_demo(db, bus)
        running.start()
        yield running
        running.stop()
        running.print_logs()
        shutil.rmtree(running.data_dir.parent, ignore_errors=True)
