"""One mapping from errors to oVirt faults: handlers never build error responses themselves."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from overt.engine.api.wire.render import to_json, to_xml
from overt.engine.db.availability import RETRY_AFTER_S, database_unavailable
from overt.engine.model.errors import OvertError

log = logging.getLogger(__name__)


def fault_response(request: Request, status: int, reason: str, detail: str) -> Response:
    rep = {"reason": reason, "detail": detail}
    accept = request.headers.get("accept", "")
    if "json" in accept and "xml" not in accept:
        response = Response(to_json(rep), status, media_type="application/json")
    else:
        response = Response(to_xml("fault", rep), status, media_type="application/xml")
    if status == 401:
        # libsoup-based clients (libgovirt, remote-viewer) send Basic credentials only when
        # challenged for them, with the realm oVirt's engine names.
        response.headers.append("WWW-Authenticate", 'Basic realm="RESTAPI"')
        response.headers.append("WWW-Authenticate", 'Bearer realm="ovirt-engine"')
    return response


def error_response(request: Request, exc: Exception) -> Response:
    if isinstance(exc, OvertError):
        return fault_response(request, exc.status, exc.reason, exc.detail)
    if database_unavailable(exc):
        return unavailable_response(request, exc)
    log.exception("unexpected error serving %s %s", request.method, request.url.path)
    return fault_response(request, 500, "Internal Server Error",
                          "The engine failed to handle the request; the engine log has details.")


def unavailable_response(request: Request, exc: Exception) -> Response:
    """The database is away (a failover, a restart): nothing was done; try again soon."""
    log.warning("%s %s: the database is unavailable (%s); answered 503", request.method,
                request.url.path, type(exc.__cause__ or exc).__name__)
    response = fault_response(
        request, 503, "Service Unavailable",
        "The engine's database is unavailable for the moment (a failover or a restart); "
        f"nothing was changed. Try again in {RETRY_AFTER_S} seconds.")
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response
