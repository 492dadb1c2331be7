"""`overt user`, `overt permission`, `overt auth`: who may sign in and what they may do."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from overt.cli.client import ApiClient, ApiError, ApiTarget, change_own_password
from overt.cli.errors import reports_errors
from overt.cli.objects import report, resolve
from overt.cli.options import CaFile, DataDir, Json, PasswordFile, Url, User, connect
from overt.cli.output import as_json, table

user_app = typer.Typer(help="Users (internal, and added from LDAP profiles).",
                       no_args_is_help=True)
permission_app = typer.Typer(help="Permissions: roles given to users and groups on the "
                             "system or on objects.", no_args_is_help=True)
auth_app = typer.Typer(help="Authentication profiles.", no_args_is_help=True)
profile_app = typer.Typer(help="Authentication profiles (internal, LDAP).",
                          no_args_is_help=True)
auth_app.add_typer(profile_app, name="profile")

# --object flags: API collection, element name
OBJECTS = {"vm": ("vms", "vm"), "cluster": ("clusters", "cluster"),
           "datacenter": ("datacenters", "data_center"), "host": ("hosts", "host"),
           "storage": ("storagedomains", "storage_domain"), "network": ("networks", "network"),
           "template": ("templates", "template")}
ObjectKind = Annotated[str | None, typer.Option(
    "--on", help=f"The kind of object: {', '.join(OBJECTS)} (none: the system).")]
ObjectName = Annotated[str | None, typer.Option("--object", help="The object's name or id.")]


def _user(client: ApiClient, user_name: str) -> dict[str, Any]:
    wanted = _qualified(user_name)
    for user in client.get("/users").get("user", []):
        if user.get("user_name") == wanted or user.get("id") == user_name:
            return dict(user)
    raise ApiError(f"there is no user {wanted}; add it with `overt user add`")


def _group(client: ApiClient, name: str) -> dict[str, Any]:
    group_name, _, domain = name.partition("@")
    for group in client.get("/groups").get("group", []):
        if group.get("name") == group_name and (not domain or
                                                group.get("domain", {}).get("name") == domain):
            return dict(group)
    raise ApiError(f"there is no group {name}; add it first (POST /groups)")


@profile_app.command("list")
@reports_errors
def list_profiles(url: Url = None, user: User = None, password_file: PasswordFile = None,
                  ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """List the profiles users sign in with (name@profile)."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        domains = client.get("/domains").get("domain", [])
    if json:
        as_json(domains)
        return
    table("Authentication profiles", ["name", "id"], [(d["name"], d["id"]) for d in domains])


@user_app.command("list")
@reports_errors
def list_users(url: Url = None, user: User = None, password_file: PasswordFile = None,
               ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """List the engine's users."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        users = client.get("/users").get("user", [])
    if json:
        as_json(users)
        return
    table("Users", ["user name", "profile", "id"], [
        (u["user_name"], u.get("domain", {}).get("name", ""), u["id"]) for u in users])


NewPasswordFile = Annotated[Path | None, typer.Option(
    help="File holding the new password (default: asked twice, not echoed).")]


def _new_password(path: Path | None) -> str:
    if path is not None:
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ApiError(f"cannot read the new password: {exc.strerror}") from None
    value: str = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    return value


@user_app.command()
@reports_errors
def add(user_name: Annotated[str, typer.Argument(
            help="name@profile of a directory user, or name@internal for a new internal "
            "user.")],
        new_password_file: NewPasswordFile = None,
        url: Url = None, user: User = None, password_file: PasswordFile = None,
        ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """Add a user of an LDAP profile (so permissions can name them), or create an internal
    user with a password that meets the password policy."""
    login, sep, profile = user_name.rpartition("@")
    if not sep or not login:
        raise ApiError("give the user as name@profile (see `overt auth profile list`)")
    body: dict[str, Any] = {"user_name": user_name, "domain": {"name": profile}}
    if profile == "internal":
        body["password"] = _new_password(new_password_file)
    with connect(url, user, password_file, ca_file, data_dir) as client:
        added = client.post("/users", body)
    report(added, json, f"user {added['user_name']} added ({added['id']})")


@user_app.command()
@reports_errors
def password(user_name: Annotated[str | None, typer.Argument(
                 help="An internal user whose password an administrator sets (default: "
                 "change your own, with your current password).")] = None,
             new_password_file: NewPasswordFile = None,
             url: Url = None, user: User = None, password_file: PasswordFile = None,
             ca_file: CaFile = None, data_dir: DataDir = None) -> None:
    """Change your internal password (also once it expired), or set another user's."""
    target = ApiTarget.from_environment(url, user, password_file, ca_file, data_dir)
    own = user_name is None or _qualified(user_name) == _qualified(target.user)
    new = _new_password(new_password_file)
    if own:
        change_own_password(target, new)
        typer.echo(f"password of {_qualified(target.user)} changed")
        return
    with ApiClient(target) as client:
        client.put(f"/users/{_user(client, user_name or '')['id']}", {"password": new})
    typer.echo(f"password of {_qualified(user_name or '')} set")


@user_app.command()
@reports_errors
def unlock(user_name: Annotated[str, typer.Argument(help="The internal user (name@internal).")],
           url: Url = None, user: User = None, password_file: PasswordFile = None,
           ca_file: CaFile = None, data_dir: DataDir = None) -> None:
    """End an internal user's lockout after failed sign-ins."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        client.post(f"/users/{_user(client, user_name)['id']}/unlock", {})
    typer.echo(f"user {_qualified(user_name)} unlocked")


def _qualified(user_name: str) -> str:
    return user_name if "@" in user_name else f"{user_name}@internal"


def _scope(client: ApiClient, on: str | None, name: str | None) -> tuple[str, str | None]:
    """The permissions collection and the element naming the object."""
    if on is None:
        if name is not None:
            raise ApiError("--object needs --on (the kind of object)")
        return "/permissions", None
    if on not in OBJECTS:
        raise ApiError(f"--on must be one of {', '.join(OBJECTS)}")
    if name is None:
        raise ApiError(f"--on {on} needs --object (its name or id)")
    collection, item = OBJECTS[on]
    found = resolve(client, collection, item, name)
    return f"/{collection}/{found['id']}/permissions", item


@permission_app.command("add")
@reports_errors
def add_permission(
        role: Annotated[str, typer.Option(help="The role's name (UserRole, ClusterAdmin, ...).")],
        to_user: Annotated[str | None, typer.Option("--user-name",
                                                    help="The user (name@profile).")] = None,
        to_group: Annotated[str | None, typer.Option("--group",
                                                     help="The group (name@profile).")] = None,
        on: ObjectKind = None, object_name: ObjectName = None,
        url: Url = None, user: User = None, password_file: PasswordFile = None,
        ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """Give a role to a user or a group, on the system or on one object."""
    if (to_user is None) == (to_group is None):
        raise ApiError("give either --user-name or --group")
    with connect(url, user, password_file, ca_file, data_dir) as client:
        path, _ = _scope(client, on, object_name)
        body: dict[str, Any] = {"role": {"name": role}}
        if to_user is not None:
            body["user"] = {"id": _user(client, to_user)["id"]}
        else:
            body["group"] = {"id": _group(client, to_group or "")["id"]}
        added = client.post(path, body)
    where = f"{on} {object_name}" if on else "the system"
    report(added, json, f"{to_user or to_group} has role {role} on {where} ({added['id']})")


@permission_app.command("list")
@reports_errors
def list_permissions(
        of_user: Annotated[str | None, typer.Option("--user-name",
                                                    help="Only this user's.")] = None,
        on: ObjectKind = None, object_name: ObjectName = None,
        url: Url = None, user: User = None, password_file: PasswordFile = None,
        ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """List permissions on the system, on one object, or of one user."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        if of_user is not None:
            path = f"/users/{_user(client, of_user)['id']}/permissions"
        else:
            path, _ = _scope(client, on, object_name)
        permissions = client.get(path).get("permission", [])
        roles = {r["id"]: r["name"] for r in client.get("/roles").get("role", [])}
        users = {u["id"]: u["user_name"] for u in client.get("/users").get("user", [])}
        groups = {g["id"]: f"{g['name']}@{g.get('domain', {}).get('name', '')}"
                  for g in client.get("/groups").get("group", [])}
    if json:
        as_json(permissions)
        return

    def holder(p: dict[str, Any]) -> str:
        if "user" in p:
            return str(users.get(p["user"]["id"], p["user"]["id"]))
        return "group " + groups.get(p.get("group", {}).get("id", ""), "?")

    def target(p: dict[str, Any]) -> str:
        for _, item in OBJECTS.values():
            if item in p:
                return f"{item.replace('_', ' ')} {p[item]['id']}"
        return "system" if path == "/permissions" else "(this object)"

    table("Permissions", ["holder", "role", "on", "id"], [
        (holder(p), roles.get(p["role"]["id"], p["role"]["id"]), target(p), p["id"])
        for p in permissions])
