"""PostgreSQL on this machine: start the cluster when it does not answer, make databases.

Debian's cluster `15/main` listens on localhost:5432; local administration goes
through the `postgres` user (peer authentication), as on any Debian machine.
"""

from __future__ import annotations

import logging
import re

from overt.system.commands import run
from overt.system.waiting import tcp_port_answers, wait_until

log = logging.getLogger(__name__)

PG_VERSION = "15"
PG_CLUSTER = "main"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def ensure_postgresql(*, timeout: float = 60) -> None:
    if tcp_port_answers("127.0.0.1", 5432):
        return
    log.info("starting PostgreSQL %s/%s", PG_VERSION, PG_CLUSTER)
    run(["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, PG_CLUSTER, "start"],
        timeout=timeout)
    wait_until(lambda: tcp_port_answers("127.0.0.1", 5432), timeout=timeout,
               what="PostgreSQL answering on 127.0.0.1:5432")


def _psql(sql: str) -> None:
    run(["runuser", "-u", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])


def _check(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"{name!r} is not a plain PostgreSQL identifier")
    return name


def create_database(name: str, owner: str, password: str) -> str:
    """Create a role and a database it owns; return the SQLAlchemy URL to reach it."""
    _check(name)
    _check(owner)
    quoted = password.replace("'", "''")
    _psql(f"CREATE ROLE {owner} LOGIN PASSWORD '{quoted}'")
    _psql(f"CREATE DATABASE {name} OWNER {owner}")
    return f"postgresql+psycopg://{owner}:{password}@127.0.0.1:5432/{name}"


def drop_database(name: str, owner: str) -> None:
    _psql(f"DROP DATABASE IF EXISTS {_check(name)} WITH (FORCE)")
    _psql(f"DROP ROLE IF EXISTS {_check(owner)}")
