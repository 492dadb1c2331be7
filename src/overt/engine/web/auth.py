"""Signing in and out of the portal with the engine's users (admin@internal for now)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from overt.engine import audit
from overt.engine.api.auth import client_of, log_in, qualified, shown
from overt.engine.identity.access import load_access
from overt.engine.model.errors import Forbidden, OvertError
from overt.engine.web import sessions
from overt.engine.web.context import WebContext, forbidden, page, render


def _next(raw: str | None) -> str:
    """Where to go after signing in: a path of this portal only (no open redirect)."""
    if raw and raw.startswith("/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return "/"


def _cookie(response: Response, name: str, value: str) -> None:
    response.set_cookie(name, value, httponly=True, secure=True, samesite="strict", path="/")


def _form_page(request: Request, *, next_url: str, error: str = "", user_name: str = "",
               status: int = 200) -> Response:
    token = request.cookies.get(sessions.SIGNIN_COOKIE) or sessions.new_secret()
    response = render(request, "signin.html", status, signin_token=token, next_url=next_url,
                      error=error, user_name=user_name)
    _cookie(response, sessions.SIGNIN_COOKIE, token)
    return response


async def signin_form(request: Request) -> Response:
    async with request.app.state.db.transaction() as session:
        if await sessions.find_session(session, request.cookies.get(sessions.COOKIE)):
            return RedirectResponse(_next(request.query_params.get("next")), status_code=303)
    return _form_page(request, next_url=_next(request.query_params.get("next")))


async def signin(request: Request) -> Response:
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    expected = request.cookies.get(sessions.SIGNIN_COOKIE)
    if not expected or not sessions.same_secret(values.get("csrf_token"), expected):
        return forbidden(request)
    user_name, password = values.get("username", "").strip(), values.get("password", "")
    next_url = _next(values.get("next"))
    if not user_name or not password:
        return _form_page(request, next_url=next_url, user_name=user_name, status=400,
                          error="Enter your user name and password.")
    db = request.app.state.db
    try:
        user = await log_in(db, request.app.state.signin_guard, user_name, password,
                            where=" to the portal", peer=client_of(request),
                            directories=request.app.state.directories)
        if user is not None:
            async with db.transaction() as session:
                if not (await load_access(session, user)).superuser:
                    raise Forbidden(f"this portal is for administrators, and "
                                    f"{shown(user.user_name)} has no SuperUser role; use the "
                                    "API (with filter=true) or ask an administrator")
                cookie, _row = await sessions.start_session(session, user)
    except OvertError as refused:  # throttled, locked out, busy
        return _form_page(request, next_url=next_url, user_name=shown(user_name),
                          status=refused.status, error=f"Cannot sign in: {refused.detail}.")
    if user is None:
        return _form_page(request, next_url=next_url, user_name=shown(user_name), status=401,
                          error=f"Cannot sign in as {qualified(shown(user_name))}: the user "
                          "name or password is incorrect.")
    response = RedirectResponse(next_url, status_code=303)
    _cookie(response, sessions.COOKIE, cookie)
    response.delete_cookie(sessions.SIGNIN_COOKIE, path="/", secure=True, httponly=True,
                           samesite="strict")
    return response


@page
async def signout(ctx: WebContext) -> Response:
    cookie = ctx.request.cookies.get(sessions.COOKIE)
    await sessions.end_session(ctx.session, cookie)
    if cookie:
        ctx.request.app.state.session_watch.end(sessions.digest(cookie))
    audit.record(ctx.session, f"User {ctx.user.user_name} logged out of the portal",
                 user_id=ctx.user.id)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/", secure=True, httponly=True,
                           samesite="strict")
    if ctx.htmx:
        response.headers["HX-Redirect"] = "/signin"
    return response


ROUTES = [
    Route("/signin", signin_form, methods=["GET"]),
    Route("/signin", signin, methods=["POST"]),
    Route("/signout", signout, methods=["POST"]),
]
