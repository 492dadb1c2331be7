"""Declaring API endpoints: each handler gets an ApiContext in a database transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overt.engine import audit
from overt.engine.api.auth import authenticate
from overt.engine.api.authorization import authorize, rule_for
from overt.engine.api.context import API_PREFIX, ApiContext
from overt.engine.api.faults import error_response
from overt.engine.api.served import declare
from overt.engine.db.availability import database_unavailable
from overt.engine.identity.access import load_access
from overt.engine.model.errors import Forbidden
from overt.engine.model.status import LogSeverity

Endpoint = Callable[[ApiContext], Awaitable[Response]]

# A read is served again this many times, this far apart, while the database fails over
# (a PostgreSQL primary lost: its replacement takes seconds); then 503 and Retry-After.
READ_RETRIES = 3
READ_RETRY_DELAY_S = 1.0


@dataclass(frozen=True)
class _Entry:
    method: str
    path: str
    endpoint: Endpoint


class ApiRoutes:
    """A collection of endpoints under /ovirt-engine/api, declared with decorators."""

    def __init__(self) -> None:
        self.entries: list[_Entry] = []

    def _add(self, method: str, path: str) -> Callable[[Endpoint], Endpoint]:
        def register(endpoint: Endpoint) -> Endpoint:
            self.entries.append(_Entry(method, path, endpoint))
            declare(method, API_PREFIX + path)
            return endpoint
        return register

    def get(self, path: str) -> Callable[[Endpoint], Endpoint]:
        return self._add("GET", path)

    def post(self, path: str) -> Callable[[Endpoint], Endpoint]:
        return self._add("POST", path)

    def put(self, path: str) -> Callable[[Endpoint], Endpoint]:
        return self._add("PUT", path)

    def delete(self, path: str) -> Callable[[Endpoint], Endpoint]:
        return self._add("DELETE", path)

    def include(self, other: ApiRoutes) -> None:
        self.entries.extend(other.entries)

    def starlette_routes(self) -> list[Route]:
        by_path: dict[str, dict[str, Endpoint]] = {}
        for entry in self.entries:
            by_path.setdefault(entry.path, {})[entry.method] = entry.endpoint
        return [Route(API_PREFIX + path, _dispatcher(path, methods), methods=list(methods))
                for path, methods in by_path.items()]


def _dispatcher(path: str, methods: dict[str, Endpoint]
                ) -> Callable[[Request], Awaitable[Response]]:
    rules = {method: rule_for(method, path) for method in methods}

    async def dispatch(request: Request) -> Response:
        """Serve `request`; a read the database failed for the moment (a failover under
        way) is served again a few times before the client is told 503 (Retry-After)."""
        for attempt in range(READ_RETRIES + 1):
            try:
                return await serve(request)
            except Exception as exc:
                if (request.method not in ("GET", "HEAD") or attempt == READ_RETRIES
                        or not database_unavailable(exc)):
                    return error_response(request, exc)
                await asyncio.sleep(READ_RETRY_DELAY_S)
        raise AssertionError("unreachable")

    async def serve(request: Request) -> Response:
        method = request.method if request.method != "HEAD" else "GET"
        endpoint = methods[method]
        state = request.app.state
        try:
            user = await authenticate(request, state.db, state.basic_auth_cache,
                                      state.signin_guard, state.directories)
            async with state.db.transaction() as session:
                ctx = ApiContext(request=request, session=session, user=user,
                                 services=state.services,
                                 path_params={k: str(v) for k, v in request.path_params.items()})
                request.state.access = access = await load_access(session, user)
                await authorize(session, access, rules[method], ctx.path_params)
                response = await endpoint(ctx)
            if ctx.then is not None:
                return await ctx.then()
            return response
        except Forbidden as refused:
            async with state.db.transaction() as session:
                audit.record(session, f"User {user.user_name} was refused {method} "
                             f"{request.url.path}: {refused.detail}",
                             code=audit.USER_NOT_AUTHORIZED, user_id=user.id,
                             severity=LogSeverity.WARNING)
            return error_response(request, refused)

    return dispatch
