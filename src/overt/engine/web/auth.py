"""Signing in and out of the portal: by name and password, or with a Kerberos ticket
(Negotiate). SuperUsers land in the admin portal, other users in the VM Portal (/user);
an internal user whose password has expired is asked to change it instead."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from overt.engine import audit
from overt.engine.api.auth import PasswordExpired, client_of, log_in, qualified, shown
from overt.engine.api.sso import negotiate
from overt.engine.db.tables import User
from overt.engine.identity.access import load_access
from overt.engine.identity.kerberos import KerberosRefused
from overt.engine.model.errors import OvertError
from overt.engine.web import passwords, sessions
from overt.engine.web.context import USER_PORTAL, WebContext, forbidden, render, user_page


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
                      error=error, user_name=user_name,
                      kerberos=request.app.state.services.kerberos is not None)
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
    except PasswordExpired:
        return passwords.expired_form(request, user_name=qualified(shown(user_name)))
    except OvertError as refused:  # throttled, locked out, busy
        return _form_page(request, next_url=next_url, user_name=shown(user_name),
                          status=refused.status, error=f"Cannot sign in: {refused.detail}.")
    if user is None:
        return _form_page(request, next_url=next_url, user_name=shown(user_name), status=401,
                          error=f"Cannot sign in as {qualified(shown(user_name))}: the user "
                          "name or password is incorrect.")
    return await _signed_in(request, user, next_url)


async def _signed_in(request: Request, user: User, next_url: str) -> Response:
    """Start the session; SuperUsers go where they were going, others to the VM Portal."""
    async with request.app.state.db.transaction() as session:
        administrator = (await load_access(session, user)).superuser
        cookie, _row = await sessions.start_session(session, user)
    if not administrator and not next_url.startswith(USER_PORTAL):
        next_url = USER_PORTAL
    response = RedirectResponse(next_url, status_code=303)
    _cookie(response, sessions.COOKIE, cookie)
    response.delete_cookie(sessions.SIGNIN_COOKIE, path="/", secure=True, httponly=True,
                           samesite="strict")
    return response


async def kerberos_signin(request: Request) -> Response:
    """GET: sign in with the browser's Kerberos ticket (SPNEGO). Without one the answer is
    a 401 challenge (`WWW-Authenticate: Negotiate`) that a browser configured for this
    engine answers by itself; its body is the sign-in form, for browsers that cannot."""
    next_url = _next(request.query_params.get("next"))
    if request.app.state.services.kerberos is None:
        return _form_page(request, next_url=next_url, status=400,
                          error="Kerberos sign-in is not configured on this engine.")
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "negotiate" or not value.strip():
        response = _form_page(request, next_url=next_url, status=401,
                              error="Your browser sent no Kerberos ticket: sign in with your "
                              "password, or get a ticket (kinit) and allow this site to use "
                              "it.")
        response.headers["WWW-Authenticate"] = "Negotiate"
        return response
    try:
        user, accepted = await negotiate(request, value, where=" to the portal")
    except KerberosRefused as refused:
        return _form_page(request, next_url=next_url, status=401,
                          error=f"Cannot sign in with Kerberos: {refused}.")
    except OvertError as refused:  # the directory is down
        return _form_page(request, next_url=next_url, status=refused.status,
                          error=f"Cannot sign in with Kerberos: {refused.detail}.")
    response = await _signed_in(request, user, next_url)
    if accepted.reply:
        response.headers["WWW-Authenticate"] = f"Negotiate {accepted.reply}"
    return response


@user_page
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
    Route("/signin/kerberos", kerberos_signin, methods=["GET"]),
    Route("/signout", signout, methods=["POST"]),
]
