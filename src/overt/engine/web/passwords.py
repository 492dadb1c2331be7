"""An internal user changes their own password in the portal: when signed in, and when
the sign-in found it expired (the one thing an expired password still does).

Both forms ask for the current password, so a session left open does not let a passer-by
take the account; both go through the service that the API's /sso/password uses (policy,
history, audit, the old tokens revoked). Directory users change theirs in the directory.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overt.engine.api.auth import client_of, log_in, qualified, shown
from overt.engine.db.tables import User
from overt.engine.identity.profiles import INTERNAL
from overt.engine.model.errors import InvalidInput, NotFound, OvertError
from overt.engine.services.internal_users import set_password
from overt.engine.web import sessions
from overt.engine.web.context import WebContext, forbidden, render, user_page

NOT_INTERNAL = ("only internal users change their password here; a directory's users "
                "change it in their directory")


def _new_password(values: dict[str, str]) -> str:
    new, again = values.get("new_password", ""), values.get("confirm_password", "")
    if not new:
        raise InvalidInput("enter a new password")
    if new != again:
        raise InvalidInput("the new password and its confirmation differ")
    return new


async def _change(request: Request, user_name: str, current: str, new: str) -> None:
    """Check the current password (counted toward the lockout like a sign-in), then set
    the new one; raises NotAuthenticated for a wrong current password."""
    state = request.app.state
    user = await log_in(state.db, state.signin_guard, user_name, current,
                        peer=client_of(request), where=" to change the password",
                        changing=True)
    if user is None:
        raise InvalidInput("the current password is incorrect")
    async with state.db.transaction() as session:
        row = await session.get(User, user.id)
        if row is None:
            raise NotFound(f"user {user.user_name} was removed")
        await set_password(session, state.services.password_policy, row, new, row)


# -- signed in -----------------------------------------------------------------------------

@user_page
async def password_form(ctx: WebContext) -> Response:
    return ctx.render("password.html", nav="password", error=None, done=False,
                      internal=ctx.user.domain == INTERNAL)


@user_page
async def change_password(ctx: WebContext) -> Response:
    values = await ctx.form()
    internal = ctx.user.domain == INTERNAL
    user_name = ctx.user.user_name
    try:
        if not internal:
            raise InvalidInput(NOT_INTERNAL)
        await _change(ctx.request, user_name, values.get("password", ""),
                      _new_password(values))
    except OvertError as refused:
        return ctx.render("password.html", refused.status, nav="password", internal=internal,
                          error=f"The password was not changed: {refused.detail}.", done=False)
    return ctx.render("password.html", nav="password", error=None, done=True,
                      internal=internal)


# -- at sign-in, for an expired password ------------------------------------------------------

def expired_form(request: Request, *, user_name: str, error: str = "", status: int = 200
                 ) -> Response:
    """The form the sign-in shows instead of a session when the password has expired."""
    token = request.cookies.get(sessions.SIGNIN_COOKIE) or sessions.new_secret()
    response = render(request, "password_expired.html", status, signin_token=token,
                      user_name=user_name, error=error)
    response.set_cookie(sessions.SIGNIN_COOKIE, token, httponly=True, secure=True,
                        samesite="strict", path="/")
    return response


async def expired_change(request: Request) -> Response:
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    expected = request.cookies.get(sessions.SIGNIN_COOKIE)
    if not expected or not sessions.same_secret(values.get("csrf_token"), expected):
        return forbidden(request)
    user_name = values.get("username", "").strip()
    try:
        if user_name.rpartition("@")[2] not in ("", INTERNAL):
            raise InvalidInput(NOT_INTERNAL)
        await _change(request, user_name, values.get("password", ""), _new_password(values))
    except OvertError as refused:
        return expired_form(request, user_name=shown(user_name), status=refused.status,
                            error=f"The password was not changed: {refused.detail}.")
    return render(request, "signin.html", signin_token=expected, next_url="/",
                  user_name=qualified(shown(user_name)),
                  error="", notice="Your password was changed. Sign in with the new one.")


ROUTES = [
    Route("/user/password", password_form, methods=["GET"]),
    Route("/user/password", change_password, methods=["POST"]),
    Route("/password", expired_change, methods=["POST"]),
]
