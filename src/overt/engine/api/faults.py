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
    headers = {"WWW-Authenticate": 'Bearer realm="ovirt-engine"'} if status == 401 else None
    if "json" in accept and "xml" not in accept:
        return Response(to_json(rep), status, headers=headers, media_type="application/json")
    return Response(to_xml("fault", rep), status, headers=headers, media_type="application/xml")


def error_response(request: Request, exc: Exception) -> Response:
    if isinstance(exc, OvertError):
        return fault_response(request, exc.status, exc.reason, exc.detail)
    log.exception("unexpected error serving %s %s", request.method, request.url.path)
    return fault_response(request, 500, "Internal Server Error",
                          "The engine failed to handle the request; the engine log has details.")
