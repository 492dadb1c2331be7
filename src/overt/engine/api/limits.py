"""Request bodies are refused by size before they are read: 413, never a read into memory.

A declared Content-Length over the limit is answered at once; a body sent without one
(chunked) is counted as the application reads it, and reading stops with BodyTooLarge
at the limit. Sign-in forms get a small limit, the API its largest documents' size.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from overt.engine.api.faults import fault_response
from overt.engine.model.errors import OvertError

API_BODY_LIMIT = 4 << 20
FORM_BODY_LIMIT = 64 << 10
# Paths under these prefixes take at most FORM_BODY_LIMIT bytes.
FORM_PATHS = ("/ovirt-engine/sso/", "/ovirt-engine/services/", "/signin", "/signout")


class BodyTooLarge(OvertError):
    reason = "Request Entity Too Large"
    status = 413


def limit_for(path: str) -> int:
    return FORM_BODY_LIMIT if path.startswith(FORM_PATHS) else API_BODY_LIMIT


class BodyLimit:
    """ASGI middleware: the body size limit of every HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, receive, send, limit)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(_detail(limit))
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _detail(limit: int) -> str:
    size = f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"
    return f"the request body is larger than {size}, the most this resource takes"


async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    request = Request(scope, receive)
    response = fault_response(request, 413, BodyTooLarge.reason, _detail(limit))
    response.headers["Connection"] = "close"  # the unread body makes the connection useless
    await response(scope, receive, send)
