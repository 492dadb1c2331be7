"""Requests without a method body that carry one anyway: answer, then close the connection.

libgovirt (remote-viewer's oVirt client) sends `Content-Length: 17` on its GETs and, when it
resends a request after a 401 challenge, sends the headers without the body. A server that
keeps the connection would read the next request's first 17 bytes as that body and answer
it with 400. Closing after such a request keeps every client's next request intact.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODILESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})


def _declares_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
        if name == b"transfer-encoding":
            return True
    return False


class CloseAfterBodiedReads:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODILESS_METHODS \
                or not _declares_body(scope):
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)
