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


def new_demo(db: str | None, bus: str = "direct", log_level: str = "info") -> Demo:
    require_root()
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-demo-test-"))
    base.chmod(0o755)
    return Demo(data_dir=base / "engine", images_dir=base / "images", db=db, bus=bus,
                log_level=log_level)


@contextlib.contextmanager
def running_demo(db: str | None = None, bus: str = "direct", log_level: str = "info"
                 ) -> Iterator[Demo]:
    """A started demo; stopped at the end, its logs printed (pytest shows them when a test
    failed) and its directory removed."""
    demo = new_demo(db, bus, log_level)
    demo.start()
    try:
        yield demo
    finally:
        demo.stop()
        demo.print_logs()
        shutil.rmtree(demo.data_dir.parent, ignore_errors=True)


@pytest.fixture(scope="module", params=[
    "sqlite", pytest.param("postgresql", marks=pytest.mark.pg),
    pytest.param("sqlite+amqp", marks=pytest.mark.amqp)])
def demo(request: pytest.FixtureRequest) -> Iterator[Demo]:
    bus = request.getfixturevalue("rabbitmq").admin_url if "amqp" in request.param \
        else "direct"
    with contextlib.ExitStack() as stack:
        db = stack.enter_context(postgres_database()) if request.param == "postgresql" else None
        yield stack.enter_context(running_demo(db, bus))
