"""Whether a database error means "the database is away for now" (a failover, a restart).

Such an error is no fault of the request: the API answers 503 with Retry-After, and the
engine's loops try again, instead of reporting an internal error.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, OperationalError

# Seconds a client is told to wait: about what a PostgreSQL failover under Patroni takes
# to be noticed (docs/engine-ha.md).
RETRY_AFTER_S = 5


def database_unavailable(exc: BaseException) -> bool:
    """A lost or refused connection (OperationalError), or any error after which the
    driver dropped the connection: the same request may succeed a moment later."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
