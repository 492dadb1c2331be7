"""`overt notify`: SNMP managers (trap receivers) and event subscriptions.

Communities and passphrases are read from files, never taken on the command line (where
any local user sees them in the process list)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from overt.cli.client import ApiClient, ApiError
from overt.cli.errors import reports_errors
from overt.cli.objects import changes, report, resolve
from overt.cli.options import CaFile, DataDir, Json, PasswordFile, Url, User, connect
from overt.cli.output import as_json, table

app = typer.Typer(help="SNMP managers and event subscriptions (engine traps).",
                  no_args_is_help=True)
SecretFile = Annotated[Path | None, typer.Option(help="A file whose first line is the secret.")]
ForUser = Annotated[str | None, typer.Option(
    "--for", help="Whose subscriptions (a user name; the signed-in user by default).")]


def _secret(file: Path | None, what: str) -> str | None:
    if file is None:
        return None
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ApiError(f"cannot read the {what} file {file}: {exc.strerror}") from None
    return lines[0].strip() if lines else ""


@app.command("managers")
@reports_errors
def list_managers(url: Url = None, user: User = None, password_file: PasswordFile = None,
                  ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """List SNMP managers (never their secrets)."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        managers = client.get("/snmpmanagers").get("snmp_manager", [])
    if json:
        as_json(managers)
        return
    table("SNMP managers", ["name", "address", "port", "version", "user", "engine id", "id"], [
        (m["name"], m["address"], m["port"], m["version"], m.get("user", ""),
         m.get("engine_id", ""), m["id"]) for m in managers])


@app.command("add-manager")
@reports_errors
def add_manager(
        name: Annotated[str, typer.Argument(help="The manager's name (subscriptions name it).")],
        address: Annotated[str, typer.Option(help="Its IP address or DNS name.")],
        port: Annotated[int, typer.Option(help="Its trap port.")] = 162,
        community_file: SecretFile = None,
        v3_user: Annotated[str | None, typer.Option(help="SNMPv3 user (authPriv, SHA/AES).")]
        = None,
        auth_passphrase_file: SecretFile = None, priv_passphrase_file: SecretFile = None,
        engine_id: Annotated[str | None, typer.Option(
            help="SNMPv3 engine id the traps come from (hex; made if not given).")] = None,
        url: Url = None, user: User = None, password_file: PasswordFile = None,
        ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """Add a trap receiver: v2c with --community-file, or v3 with --v3-user and both
    passphrase files."""
    body: dict[str, Any] = changes(
        name=name, address=address, port=port, version="v3" if v3_user else "v2c",
        community=_secret(community_file, "community"), user=v3_user,
        auth_passphrase=_secret(auth_passphrase_file, "auth passphrase"),
        priv_passphrase=_secret(priv_passphrase_file, "priv passphrase"), engine_id=engine_id)
    with connect(url, user, password_file, ca_file, data_dir) as client:
        manager = client.post("/snmpmanagers", body)
    report(manager, json, f"SNMP manager {manager['name']} added ({manager['version']}"
           + (f", engine id {manager['engine_id']})" if manager.get("engine_id") else ")"))


@app.command("update-manager")
@reports_errors
def update_manager(
        name: Annotated[str, typer.Argument(help="The manager's name or id.")],
        new_name: Annotated[str | None, typer.Option(
            "--name", help="A new name (its subscriptions follow it).")] = None,
        address: Annotated[str | None, typer.Option(help="Its IP address or DNS name.")]
        = None,
        port: Annotated[int | None, typer.Option(help="Its trap port.")] = None,
        community_file: SecretFile = None,
        v3_user: Annotated[str | None, typer.Option(help="SNMPv3 user (switches to v3).")]
        = None,
        auth_passphrase_file: SecretFile = None, priv_passphrase_file: SecretFile = None,
        engine_id: Annotated[str | None, typer.Option(help="SNMPv3 engine id (hex).")] = None,
        url: Url = None, user: User = None, password_file: PasswordFile = None,
        ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """Change a trap receiver: only what is given changes (its secrets stay unless new
    files are given); --v3-user with both passphrase files makes it v3, --community-file
    alone makes a v3 manager v2c."""
    community = _secret(community_file, "community")
    version = "v3" if v3_user else ("v2c" if community is not None and not (
        auth_passphrase_file or priv_passphrase_file) else None)
    body: dict[str, Any] = changes(
        name=new_name, address=address, port=port, version=version, community=community,
        user=v3_user, auth_passphrase=_secret(auth_passphrase_file, "auth passphrase"),
        priv_passphrase=_secret(priv_passphrase_file, "priv passphrase"), engine_id=engine_id)
    with connect(url, user, password_file, ca_file, data_dir) as client:
        found = resolve_manager(client, name)
        manager = client.put(f"/snmpmanagers/{found['id']}", body)
    report(manager, json, f"SNMP manager {manager['name']} updated ({manager['version']}, "
           f"{manager['address']}:{manager['port']})")


@app.command("events")
@reports_errors
def list_events(json: Json = False) -> None:
    """List the events a user can subscribe to, with the audit codes that raise each."""
    from overt.engine.notifier.events import NOTIFIABLE

    rows = [{"event": name, "codes": sorted(codes)} for name, codes in sorted(
        NOTIFIABLE.items())]
    if json:
        as_json(rows)
        return
    table("Notifiable events", ["event", "audit codes"], [
        (row["event"], ", ".join(str(c) for c in row["codes"])) for row in rows])


@app.command("remove-manager")
@reports_errors
def remove_manager(name: Annotated[str, typer.Argument(help="The manager's name or id.")],
                   url: Url = None, user: User = None, password_file: PasswordFile = None,
                   ca_file: CaFile = None, data_dir: DataDir = None) -> None:
    """Remove a manager no subscription names."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        found = resolve_manager(client, name)
        client.delete(f"/snmpmanagers/{found['id']}")
    report(found, False, f"SNMP manager {found['name']} removed")


def resolve_manager(client: ApiClient, name: str) -> dict[str, Any]:
    for manager in client.get("/snmpmanagers").get("snmp_manager", []):
        if name in (manager["name"], manager["id"]):
            return dict(manager)
    raise ApiError(f"there is no SNMP manager named {name!r}")


def _user_id(client: ApiClient, name: str | None, signed_in: str | None) -> str:
    wanted = name or signed_in or os.environ.get("OVERT_USER", "admin@internal")
    for found in client.get("/users").get("user", []):
        if wanted in (found.get("user_name"), found.get("id")):
            return str(found["id"])
    return str(resolve(client, "users", "user", wanted)["id"])


@app.command("subscriptions")
@reports_errors
def list_subscriptions(for_user: ForUser = None, url: Url = None, user: User = None,
                       password_file: PasswordFile = None, ca_file: CaFile = None,
                       data_dir: DataDir = None, json: Json = False) -> None:
    """List a user's event subscriptions."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        user_id = _user_id(client, for_user, user)
        subs = client.get(f"/users/{user_id}/eventsubscriptions").get("event_subscription", [])
    if json:
        as_json(subs)
        return
    table("Event subscriptions", ["event", "method", "manager"], [
        (s["event"], s["notification_method"], s.get("address") or "(all)") for s in subs])


@app.command()
@reports_errors
def subscribe(event: Annotated[str, typer.Argument(help="oVirt's event name, e.g. "
                                                   "host_failure, vm_down_error.")],
              manager: Annotated[str | None, typer.Option(
                  help="Send to this manager only (every manager by default).")] = None,
              for_user: ForUser = None, url: Url = None, user: User = None,
              password_file: PasswordFile = None, ca_file: CaFile = None,
              data_dir: DataDir = None, json: Json = False) -> None:
    """Subscribe a user to an event: each one sends an SNMP trap."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        user_id = _user_id(client, for_user, user)
        made = client.post(f"/users/{user_id}/eventsubscriptions", changes(
            event=event, notification_method="snmp", address=manager))
    report(made, json, f"Subscribed to {made['event']}")


@app.command()
@reports_errors
def unsubscribe(event: Annotated[str, typer.Argument(help="The event name.")],
                for_user: ForUser = None, url: Url = None, user: User = None,
                password_file: PasswordFile = None, ca_file: CaFile = None,
                data_dir: DataDir = None) -> None:
    """Remove a user's subscription to an event."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        user_id = _user_id(client, for_user, user)
        client.delete(f"/users/{user_id}/eventsubscriptions/{event}")
    report({}, False, f"Unsubscribed from {event}")
