"""What a portal page handler gets, and the one guard every page goes through.

The guard finds the session (or sends the browser to sign in), checks the CSRF token
of every state-changing request, runs the handler in a database transaction, and
turns domain errors into readable pages or fragments, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from overt.engine import audit
from overt.engine.db.tables import User, WebSession
from overt.engine.identity.access import Access, load_access
from overt.engine.model.errors import Forbidden, NotFound, OvertError
from overt.engine.model.status import LogSeverity
from overt.engine.web import sessions

log = logging.getLogger(__name__)

USER_PORTAL = "/user"  # the VM Portal: what a user without the SuperUser role sees
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TEMPLATES = Path(__file__).parent / "templates"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _size(value: int | None) -> str:
    if value is None:
        return ""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" or size >= 10 else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


def build_templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["when"] = _when
    env.filters["size"] = _size
    return env


TEMPLATE_ENV = build_templates()


def render(request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
    values.setdefault("user", None)
    values.setdefault("csrf_token", "")
    values.setdefault("nav", "")
    html = TEMPLATE_ENV.get_template(name).render(request=request, **values)
    return HTMLResponse(html, status, headers=SECURITY_HEADERS)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def error_page(request: Request, status: int, title: str, message: str,
               user: Viewer | None = None, csrf_token: str = "") -> HTMLResponse:
    if is_htmx(request):
        return render(request, "_error.html", status, title=title, message=message)
    return render(request, "error.html", status, title=title, message=message, user=user,
                  csrf_token=csrf_token)


@dataclass(frozen=True)
class Viewer:
    """Who is signed in, as templates show it (plain values: they outlive a rollback)."""

    id: uuid.UUID
    user_name: str
    administrator: bool = True  # the admin portal's pages; else the VM Portal's


@dataclass
class WebContext:
    request: Request
    session: AsyncSession
    user: User
    web_session: WebSession
    services: Any  # overt.engine.api.app.ApiServices (typed loosely: no import cycle)
    access: Access | None = None  # the user's grants (loaded by the guard)
    # After the transaction committed: answers instead of the handler (waits for a job).
    then: Callable[[], Awaitable[Response]] | None = None
    # Answers a domain error after the rollback (which expires every row read so far).
    on_error: Callable[[OvertError], Awaitable[Response]] | None = None
    viewer: Viewer = field(init=False)
    csrf_token: str = field(init=False)

    def __post_init__(self) -> None:
        self.viewer = Viewer(self.user.id, self.user.user_name,
                             self.access is None or self.access.superuser)
        self.csrf_token = self.web_session.csrf_token

    @property
    def htmx(self) -> bool:
        return is_htmx(self.request)

    def render(self, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        return render(self.request, name, status, user=self.viewer, csrf_token=self.csrf_token,
                      **values)

    def id_param(self, name: str) -> uuid.UUID:
        raw = str(self.request.path_params[name])
        try:
            return uuid.UUID(raw)
        except ValueError:
            raise NotFound(f"there is no object with id {raw!r}") from None

    async def form(self) -> dict[str, str]:
        form = await self.request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}


Handler = Callable[[WebContext], Awaitable[Response]]


class CsrfRefused(Exception):
    """A state-changing request without this session's CSRF token."""


async def check_csrf(request: Request, expected: str) -> None:
    given = request.headers.get("x-csrf-token")
    if given is None:
        try:
            given = str((await request.form()).get("csrf_token") or "")
        except Exception:
            given = ""
    if not sessions.same_secret(given, expected):
        raise CsrfRefused()


def signin_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if is_htmx(request):
        # A page part asked: after signing in, come back to the page, not to the part.
        current = urlsplit(request.headers.get("hx-current-url", "/"))
        target = current.path + (f"?{current.query}" if current.query else "")
    location = f"/signin?next={quote(target, safe='')}" if target not in ("/", "") else "/signin"
    if is_htmx(request):
        return Response(status_code=401, headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=303)


def forbidden(request: Request) -> Response:
    return error_page(request, 403, "Request refused",
                      "The form was not sent from this portal page (its security token is "
                      "missing or out of date). Reload the page and try again.")


async def _audit_refusal(request: Request, viewer: Viewer, refused: Forbidden) -> None:
    """Every refusal of a signed-in user goes to the audit log, as the API's do."""
    async with request.app.state.db.transaction() as session:
        audit.record(session, f"User {viewer.user_name} was refused {request.method} "
                     f"{request.url.path} in the portal: {refused.detail}",
                     code=audit.USER_NOT_AUTHORIZED, user_id=viewer.id,
                     severity=LogSeverity.WARNING)


def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """An admin portal endpoint: signed-in SuperUsers only, CSRF-checked, errors made
    readable."""
    return _guarded(handler, administrators=True)


def user_page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A user portal endpoint: any signed-in user (the handler checks their permits on
    what it touches, through the API's authorization), CSRF-checked."""
    return _guarded(handler, administrators=False)


def _guarded(handler: Handler, *, administrators: bool
             ) -> Callable[[Request], Awaitable[Response]]:
    @wraps(handler)
    async def endpoint(request: Request) -> Response:
        state = request.app.state
        ctx: WebContext | None = None
        try:
            async with state.db.transaction() as session:
                found = await sessions.find_session(session, request.cookies.get(sessions.COOKIE))
                if found is None:
                    return signin_redirect(request)
                web_session, user = found
                access = await load_access(session, user)
                if administrators and not access.superuser:
                    if request.method in SAFE_METHODS and not is_htmx(request):
                        return RedirectResponse(USER_PORTAL, status_code=303)
                    raise Forbidden("this portal is for administrators; your account has no "
                                    f"SuperUser role: use the VM Portal ({USER_PORTAL})")
                if request.method not in SAFE_METHODS:
                    await check_csrf(request, web_session.csrf_token)
                ctx = WebContext(request=request, session=session, user=user,
                                 web_session=web_session, services=state.services,
                                 access=access)
                response = await handler(ctx)
            if ctx.then is not None:
                return await ctx.then()
            return response
        except CsrfRefused:
            log.warning("refused a %s to %s without a valid CSRF token", request.method,
                        request.url.path)
            return forbidden(request)
        except OvertError as exc:
            if isinstance(exc, Forbidden) and ctx is not None:
                await _audit_refusal(request, ctx.viewer, exc)
            if ctx is not None and ctx.on_error is not None:
                return await ctx.on_error(exc)
            return error_page(request, exc.status, exc.reason, exc.detail,
                              user=ctx.viewer if ctx else None,
                              csrf_token=ctx.csrf_token if ctx else "")
        except Exception:
            log.exception("the portal failed to serve %s %s", request.method, request.url.path)
            return error_page(request, 500, "Something went wrong",
                              "The engine failed to handle the request; its log has details.")

    return endpoint
