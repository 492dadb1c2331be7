"""GET /metrics: the engine's figures in Prometheus' text format, never open to anyone.

A scrape is admitted with the metrics token (`metrics_token_file`; Prometheus sends it
as a bearer token, `authorization.credentials_file`), or with the API's own
credentials (HTTP Basic or an SSO bearer token) of a user with a role on the system:
the figures name every host and VM. Anything else is refused with the API's 401/403
fault. There is no unauthenticated mode.
"""

from __future__ import annotations

import hmac
import time

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overt.engine import audit
from overt.engine.api.auth import authenticate
from overt.engine.api.faults import error_response
from overt.engine.identity.access import load_access
from overt.engine.metrics.exposition import render
from overt.engine.metrics.figures import read_fleet_figures
from overt.engine.metrics.process import ProcessMetrics
from overt.engine.model.errors import Forbidden
from overt.engine.model.status import LogSeverity

PATH = "/metrics"


def _has_metrics_token(request: Request, token: str | None) -> bool:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return (token is not None and scheme.lower() == "bearer"
            and hmac.compare_digest(credentials.strip().encode(), token.encode()))


async def _admit(request: Request) -> None:
    """Raises NotAuthenticated (401) or Forbidden (403) unless the caller may scrape."""
    state = request.app.state
    if _has_metrics_token(request, state.services.metrics_token):
        return
    user = await authenticate(request, state.db, state.basic_auth_cache, state.signin_guard,
                              state.directories)
    async with state.db.transaction() as session:
        access = await load_access(session, user)
        if not access.system_wide:
            audit.record(session, f"User {user.user_name} was refused GET {PATH}: no role on "
                         "the system", code=audit.USER_NOT_AUTHORIZED, user_id=user.id,
                         severity=LogSeverity.WARNING)
    if not access.system_wide:
        raise Forbidden("reading /metrics needs a role on the system (its figures name every "
                        "host and VM), or the metrics token")


async def metrics(request: Request) -> Response:
    state = request.app.state
    process: ProcessMetrics = state.process_metrics
    try:
        await _admit(request)
        started = time.perf_counter()
        async with state.db.transaction() as session:
            figures = await read_fleet_figures(session)
        process.fleet_read_seconds.set(time.perf_counter() - started)
    except Exception as exc:
        return error_response(request, exc)
    return Response(render(figures, process), media_type=CONTENT_TYPE_LATEST)


ROUTES = [Route(PATH, metrics, methods=["GET"])]
