"""oVirt's SSO endpoints as the SDK uses them: password grant for a token, and logout."""

from __future__ import annotations

import json
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overt.engine import audit
from overt.engine.api.auth import (
    client_of,
    log_in,
    note_failure,
    qualified,
    shown,
)
from overt.engine.api.limits import BodyTooLarge
from overt.engine.db.tables import User
from overt.engine.identity.directory_users import remember_directory_user
from overt.engine.identity.kerberos import Accepted, KerberosRefused
from overt.engine.identity.profiles import INTERNAL, split_principal
from overt.engine.identity.tokens import issue_token, revoke_token
from overt.engine.model.errors import NotFound, OvertError
from overt.engine.services.internal_users import set_password

SCOPE = "ovirt-app-api"


def _json(data: object, status: int = 200) -> Response:
    return Response(json.dumps(data), status, media_type="application/json")


def _error(code: str, message: str, status: int = 400) -> Response:
    return _json({"error_code": code, "error": message}, status)


async def _form(request: Request) -> dict[str, str]:
    try:
        form = await request.form()
    except BodyTooLarge:
        raise
    except Exception:
        return {}
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def token(request: Request) -> Response:
    form = await _form(request)
    if form.get("grant_type") != "password":
        return _error("unsupported_grant_type",
                      f"grant type {form.get('grant_type')!r} is not supported; use 'password'")
    user_name, password = form.get("username", ""), form.get("password", "")
    if not user_name or not password:
        return _error("invalid_request", "username and password are required")
    db = request.app.state.db
    try:
        user = await log_in(db, request.app.state.signin_guard, user_name, password,
                            peer=client_of(request), directories=request.app.state.directories)
    except OvertError as refused:  # throttled, locked out, busy
        return _error("access_denied", refused.detail, refused.status)
    if user is None:
        return _error("access_denied", f"Cannot authenticate user '{qualified(shown(user_name))}'"
                      ": the user name or password is incorrect.")
    async with db.transaction() as session:
        value, expires = await issue_token(session, user)
    return _json({"access_token": value, "token_type": "bearer", "scope": form.get("scope", SCOPE),
                  "exp": str(int(expires.timestamp() * 1000)),
                  "expires_in": int(expires.timestamp() - time.time())})


async def change_password(request: Request) -> Response:
    """A user changes their own internal password with the current one: the only use an
    expired password has. Failures count toward the lockout like any sign-in."""
    form = await _form(request)
    user_name, password = form.get("username", ""), form.get("password", "")
    new_password = form.get("new_password", "")
    if not user_name or not password or not new_password:
        return _error("invalid_request", "username, password and new_password are required")
    if split_principal(user_name)[1] != INTERNAL:
        return _error("invalid_request", "only internal users change their password here; "
                      "a directory's users change it in their directory")
    db, state = request.app.state.db, request.app.state
    try:
        user = await log_in(db, state.signin_guard, user_name, password, peer=client_of(request),
                            where=" to change the password", changing=True)
        if user is None:
            return _error("access_denied", f"Cannot authenticate user "
                          f"'{qualified(shown(user_name))}': the user name or password is "
                          "incorrect.")
        async with db.transaction() as session:
            row = await session.get(User, user.id)
            if row is None:
                raise NotFound(f"user {user.user_name} was removed")
            await set_password(session, state.services.password_policy, row, new_password, row)
    except OvertError as refused:
        return _error("access_denied" if refused.status in (401, 429) else "invalid_request",
                      refused.detail, refused.status)
    return _json({"changed": True})


HTTP_GRANT = "urn:ovirt:params:oauth:grant-type:http"


def _negotiate(message: str) -> Response:
    """The challenge a client with a Kerberos ticket answers (libcurl retries with it)."""
    response = _error("access_denied", message, 401)
    response.headers["WWW-Authenticate"] = "Negotiate"
    return response


async def token_http_auth(request: Request) -> Response:
    """A token for a user who proves a Kerberos ticket (SPNEGO), as oVirt's SSO issues it."""
    form = await _form(request)
    kerberos = request.app.state.services.kerberos
    if kerberos is None:
        return _error("access_denied", "Kerberos sign-in is not configured on this engine "
                      "(setting kerberos_keytab)")
    if form.get("grant_type", HTTP_GRANT) != HTTP_GRANT:
        return _error("unsupported_grant_type", f"use grant_type {HTTP_GRANT}")
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "negotiate" or not value.strip():
        return _negotiate("authentication is required: send a Kerberos ticket "
                          "(Authorization: Negotiate)")
    try:
        user, accepted = await negotiate(request, value, where="")
    except KerberosRefused as refused:
        return _negotiate(str(refused))
    except OvertError as refused:  # the directory is down
        return _error("access_denied", refused.detail, refused.status)
    async with request.app.state.db.transaction() as session:
        value_, expires = await issue_token(session, user)
    response = _json({"access_token": value_, "token_type": "bearer",
                      "scope": form.get("scope", SCOPE),
                      "exp": str(int(expires.timestamp() * 1000)),
                      "expires_in": int(expires.timestamp() - time.time())})
    if accepted.reply:
        response.headers["WWW-Authenticate"] = f"Negotiate {accepted.reply}"
    return response


async def negotiate(request: Request, value: str, *, where: str) -> tuple[User, Accepted]:
    """The directory user a Negotiate token proves (SSO token endpoint, portal), audited;
    raises KerberosRefused (a bad ticket, an unknown principal: counted as failures) or
    OvertError (the directory is down). `where`: " to the portal"."""
    kerberos = request.app.state.services.kerberos
    if kerberos is None:
        raise KerberosRefused("Kerberos sign-in is not configured on this engine")
    db, peer = request.app.state.db, client_of(request)
    directories = request.app.state.directories
    guard = request.app.state.signin_guard
    try:
        accepted = await directories.run(lambda: kerberos.accept(value))
        found = await directories.find_user(kerberos.profile, accepted.login)
    except KerberosRefused:
        async with db.transaction() as session:
            note_failure(session, guard, "(Kerberos)", peer=peer, where=f"{where} with Kerberos")
        raise
    name = f"{accepted.login}@{kerberos.profile}"
    async with db.transaction() as session:
        if found is None:
            note_failure(session, guard, shown(name), peer=peer,
                         where=f"{where} with Kerberos as {shown(accepted.principal)}")
            refused = KerberosRefused(f"Cannot authenticate user '{shown(accepted.principal)}'"
                                      f": there is no such user in profile {kerberos.profile}")
        else:
            user = await remember_directory_user(session, kerberos.profile, found)
            audit.record(session, f"User {user.user_name} logged in{where} with Kerberos as "
                         f"{shown(accepted.principal)}", code=audit.USER_LOGIN, user_id=user.id)
            return user, accepted
    raise refused


async def logout(request: Request) -> Response:
    form = await _form(request)
    value = form.get("token") or request.headers.get("authorization", "").partition(" ")[2]
    if value:
        async with request.app.state.db.transaction() as session:
            await revoke_token(session, value)
    return _json({})


ROUTES = [
    Route("/ovirt-engine/sso/oauth/token", token, methods=["POST"]),
    Route("/ovirt-engine/sso/oauth/token-http-auth", token_http_auth, methods=["POST"]),
    Route("/ovirt-engine/services/sso-logout", logout, methods=["POST", "GET"]),
    Route("/ovirt-engine/sso/password", change_password, methods=["POST"]),
]
