"""`overt storage`: list, add (local or NFS), attach and detach, update, switch to
maintenance and back, and remove storage domains."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from overt.cli.client import ApiClient, ApiError
from overt.cli.errors import reports_errors
from overt.cli.objects import changes, report, resolve
from overt.cli.options import CaFile, DataDir, Json, PasswordFile, Url, User, connect
from overt.cli.output import as_json, human_bytes, table

app = typer.Typer(help="Storage domains.", no_args_is_help=True)
Name = Annotated[str, typer.Argument(help="The storage domain's name or id.")]
Description = Annotated[str | None, typer.Option(help="A description.")]


def _place(storage: dict[str, Any]) -> str:
    """Where a domain is: `type:path`, or an iSCSI domain's `iscsi:TARGET/LUN`."""
    units = storage.get("volume_group", {}).get("logical_units", {}).get("logical_unit", [])
    if units:
        return f"{storage.get('type', '')}:{units[0].get('target')}/{units[0].get('lun_mapping')}"
    return f"{storage.get('type', '')}:{storage.get('path', '')}"


@app.command("list")
@reports_errors
def list_domains(url: Url = None, user: User = None, password_file: PasswordFile = None,
                 ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """List storage domains with their status, place and free space."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        domains = client.get("/storagedomains").get("storage_domain", [])
    if json:
        as_json(domains)
        return
    table("Storage domains", ["name", "status", "type", "storage", "free", "id"], [
        (d["name"], d.get("status", ""), d.get("type", ""),
         _place(d.get("storage", {})), human_bytes(d.get("available")), d["id"]) for d in domains])


@app.command()
@reports_errors
def add(name: Annotated[str, typer.Argument(help="The new storage domain's name.")],
        host: Annotated[str, typer.Option(help="The host whose directory holds it (local), "
                                                "or that lays it out (NFS).")],
        path: Annotated[str, typer.Option(help="An absolute directory on that host, or the "
                                               "export with --nfs.")],
        nfs: Annotated[str | None, typer.Option(
            help="An NFS server: the domain is shared, on its export PATH.")] = None,
        import_: Annotated[bool, typer.Option(
            "--import", help="With --nfs: import the domain already on the export.")] = False,
        description: Description = None,
        url: Url = None, user: User = None, password_file: PasswordFile = None,
        ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """Add a data domain: a directory on one host (local), or an NFS export (--nfs)."""
    storage = {"type": "nfs", "address": nfs, "path": path} if nfs else \
        {"type": "localfs", "path": path}
    with connect(url, user, password_file, ca_file, data_dir) as client:
        found = resolve(client, "hosts", "host", host)
        domain = client.post("/storagedomains", {
            "name": name, "type": "data", "host": {"id": found["id"]}, "storage": storage,
            **({"import": True} if import_ and nfs else {}),
            **changes(description=description)})
    where = f"{nfs}:{path} (status {domain.get('status')})" if nfs else f"host {found['name']}"
    report(domain, json, f"Storage domain {domain['name']} added on {where}")


@app.command()
@reports_errors
def attach(domain: Name,
           data_center: Annotated[str, typer.Option(help="The data center's name or id.")],
           url: Url = None, user: User = None, password_file: PasswordFile = None,
           ca_file: CaFile = None, data_dir: DataDir = None) -> None:
    """Attach a shared (NFS, iSCSI) domain to a data center; it then becomes active."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        found = resolve(client, "storagedomains", "storage_domain", domain)
        dc = resolve(client, "datacenters", "data_center", data_center)
        client.post(f"/datacenters/{dc['id']}/storagedomains", {"id": found["id"]})
    report({}, False, f"Storage domain {found['name']} is being attached to {dc['name']}")


@app.command()
@reports_errors
def detach(domain: Name, url: Url = None, user: User = None,
           password_file: PasswordFile = None, ca_file: CaFile = None,
           data_dir: DataDir = None) -> None:
    """Detach a shared domain in maintenance from its data center (another engine may
    then import it)."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        found = resolve(client, "storagedomains", "storage_domain", domain)
        dcs = found.get("data_centers", {}).get("data_center", [])
        if not dcs:
            raise ApiError(f"storage domain {found['name']} is not attached to a data center")
        client.delete(f"/datacenters/{dcs[0]['id']}/storagedomains/{found['id']}")
    report({}, False, f"Storage domain {found['name']} is being detached")


@app.command()
@reports_errors
def update(domain: Name,
           name: Annotated[str | None, typer.Option(help="A new name.")] = None,
           description: Description = None,
           url: Url = None, user: User = None, password_file: PasswordFile = None,
           ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """Rename a storage domain or change its description."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        found = resolve(client, "storagedomains", "storage_domain", domain)
        updated = client.put(f"/storagedomains/{found['id']}",
                             changes(name=name, description=description))
    report(updated, json, f"Storage domain {updated['name']} updated")


def _attached_action(client: ApiClient, domain: dict[str, Any], verb: str) -> None:
    dcs = domain.get("data_centers", {}).get("data_center", [])
    if not dcs:
        raise ApiError(f"storage domain {domain['name']} is not attached to a data center")
    client.post(f"/datacenters/{dcs[0]['id']}/storagedomains/{domain['id']}/{verb}", {})


@app.command()
@reports_errors
def maintenance(domain: Name, url: Url = None, user: User = None,
                password_file: PasswordFile = None, ca_file: CaFile = None,
                data_dir: DataDir = None) -> None:
    """Switch a storage domain to maintenance (needed before removing it)."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        found = resolve(client, "storagedomains", "storage_domain", domain)
        _attached_action(client, found, "deactivate")
    report({}, False, f"Storage domain {found['name']} is in maintenance")


@app.command()
@reports_errors
def activate(domain: Name, url: Url = None, user: User = None,
             password_file: PasswordFile = None, ca_file: CaFile = None,
             data_dir: DataDir = None) -> None:
    """Bring a storage domain back from maintenance."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        found = resolve(client, "storagedomains", "storage_domain", domain)
        _attached_action(client, found, "activate")
    report({}, False, f"Storage domain {found['name']} is active")


@app.command()
@reports_errors
def remove(domain: Name, url: Url = None, user: User = None,
           password_file: PasswordFile = None, ca_file: CaFile = None,
           data_dir: DataDir = None) -> None:
    """Remove an empty storage domain in maintenance (its directory stays on the host)."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        found = resolve(client, "storagedomains", "storage_domain", domain)
        client.delete(f"/storagedomains/{found['id']}")
    report({}, False, f"Storage domain {found['name']} removed")
