"""Bringing a database's schema up to date with Alembic (run at every engine start)."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine

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
    """Apply every migration the database lacks."""
    command.upgrade(alembic_config(url), "head")
    # SQLite drops a table's triggers when a migration rebuilds it: put them back.
    engine = create_engine(sync_url(url))
    try:
        with engine.begin() as connection:
            change_log.install(connection)
    finally:
        engine.dispose()
