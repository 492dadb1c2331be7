"""Bringing a database's schema up to date with Alembic (run at every engine start)."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine

from overt.engine.db import change_log
from overt.engine.db.database import sync_url


def alembic_config(url: str) -> Config:
    config = Config()
    scripts = resources.files("overt.engine.db") / "migrations"
    config.set_main_option("script_location", str(scripts))
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def upgrade(url: str) -> None:
    """Apply every migration the database lacks.

    SQLite drops a table's triggers when a migration rebuilds the table, so after
    migrations ran on SQLite the change log's triggers are put back. Nothing else is
    written at a start that has nothing to migrate: several engine parts start at once
    against one database, and PostgreSQL refuses concurrent replacements of one function
    ("tuple concurrently updated")."""
    engine = create_engine(sync_url(url))
    try:
        if engine.dialect.name != "sqlite":
            command.upgrade(alembic_config(url), "head")
            return
        before = _revision(engine)
        command.upgrade(alembic_config(url), "head")
        if _revision(engine) != before:
            with engine.begin() as connection:
                change_log.install(connection)
    finally:
        engine.dispose()


def _revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
