"""One mapping from errors to oVirt faults: handlers never build error responses themselves."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from overt.engine.api.wire.render import to_json, to_xml
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
    log.exception("unexpected error serving %s %s", request.method, request.url.path)
    return fault_response(request, 500, "Internal Server Error",
                          "The engine failed to handle the request; the engine log has details.")
