"""Whether a database error means "the database is away for now" (a failover, a restart).

Such an error is no fault of the request: the API answers 503 with Retry-After, and the
engine's loops try again, instead of reporting an internal error.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, ExceptionContext
from sqlalchemy.exc import DBAPIError, OperationalError

# Seconds a client is told to wait: about what a PostgreSQL failover under Patroni takes
# to be noticed (docs/engine-ha.md).
RETRY_AFTER_S = 5
# PostgreSQL's read_only_sql_transaction: a write reached a server that is (no longer) the
# primary, as a connection opened before a failover does once its server is demoted.
READ_ONLY_SQL_TRANSACTION = "25006"


def database_unavailable(exc: BaseException) -> bool:
    """A lost or refused connection (OperationalError), or any error after which the
    driver dropped the connection: the same request may succeed a moment later."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def _demoted_server(context: ExceptionContext) -> None:
    """A write refused as read-only came over a connection to a former primary: drop the
    connection (SQLAlchemy then invalidates it, and the pool's next one reaches the new
    primary) and treat the error as the database away for now, not as the request's."""
    orig: Any = context.original_exception
    if getattr(orig, "sqlstate", None) == READ_ONLY_SQL_TRANSACTION:
        context.is_disconnect = True


def drop_connections_to_demoted_servers(engine: Engine) -> None:
    """Install `_demoted_server` on a PostgreSQL engine (the sync engine of an async one)."""
    event.listen(engine, "handle_error", _demoted_server)
