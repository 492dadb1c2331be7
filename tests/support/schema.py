"""SQLite databases at the current schema, migrated once per test run: tests copy them
instead of migrating databases of their own. The migrations themselves are tested in
tests/integration/engine/db (and an engine started on a copy still runs them: nothing
left to do)."""

from __future__ import annotations

import atexit
import base64
import functools
import hashlib
import os
import shutil
import tempfile
import uuid
from importlib import metadata
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from overt.engine.db import migrate
from overt.engine.db.seed import ADMIN
from overt.engine.db.tables import User

TEST_PASSWORD = "test-Password-1"  # the test engines' administrator
# Test engines sign their administrator in hundreds of times per run: its password is
# stored as scrypt at a lower cost. A hash names its own cost, so checking it runs the
# engine's code unchanged; every hash the engine makes itself keeps the engine's cost.
_TEST_SCRYPT_N, _R, _P = 2**10, 8, 1


@functools.cache
def _directory() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="overt-schema-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


@functools.cache
def migrated_sqlite() -> Path:
    """The migrated database, kept between runs (and shared by the lane's worker processes)
    under a name that changes with the migrations and the libraries that run them: a run
    after no migration changed costs no migration at all."""
    cached = Path(tempfile.gettempdir()) / "overt-test-schema" / _migrations_digest() / "engine.db"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        building = cached.with_name(f"building-{os.getpid()}-{uuid.uuid4().hex[:8]}.db")
        try:
            migrate.upgrade(f"sqlite:///{building}")
            building.replace(cached)  # whole or not at all, whoever builds it at once
        finally:
            building.unlink(missing_ok=True)
    path = _directory() / "engine.db"
    shutil.copyfile(cached, path)
    return path


def _migrations_digest() -> str:
    digest = hashlib.sha256()
    for package in ("alembic", "sqlalchemy"):
        digest.update(f"{package}={metadata.version(package)};".encode())
    scripts = Path(migrate.__file__).parent / "migrations"
    for script in sorted(scripts.rglob("*.py")):
        digest.update(str(script.relative_to(scripts)).encode() + b"\0" + script.read_bytes())
    return digest.hexdigest()[:16]


@functools.cache
def engine_sqlite() -> Path:
    """The migrated database with the test administrator (password TEST_PASSWORD)."""
    path = _directory() / "engine-with-admin.db"
    shutil.copyfile(migrated_sqlite(), path)
    database = create_engine(f"sqlite:///{path}")
    try:
        with Session(database) as session, session.begin():
            session.add(User(id=uuid.uuid4(), user_name=ADMIN, domain="internal",
                             administrator=True, password_hash=_cheap_hash(TEST_PASSWORD)))
    finally:
        database.dispose()
    return path


def _cheap_hash(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_TEST_SCRYPT_N, r=_R, p=_P,
                            dklen=32)
    return (f"scrypt${_TEST_SCRYPT_N}${_R}${_P}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


def copy_migrated_sqlite(target: Path, *, with_admin: bool = False) -> None:
    """Put a database at the current schema at `target` (a new file)."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.copyfile(engine_sqlite() if with_admin else migrated_sqlite(), target)
