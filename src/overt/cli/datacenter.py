"""`overt datacenter`: list, add, update and remove data centers."""

from __future__ import annotations

from typing import Annotated

import typer

from overt.cli.errors import reports_errors
from overt.cli.objects import changes, report, resolve
from overt.cli.options import CaFile, DataDir, Json, PasswordFile, Url, User, connect
from overt.cli.output import as_json, table

app = typer.Typer(help="Data centers.", no_args_is_help=True)
Name = Annotated[str, typer.Argument(help="The data center's name or id.")]
Description = Annotated[str | None, typer.Option(help="A description.")]


@app.command("list")
@reports_errors
def list_data_centers(url: Url = None, user: User = None, password_file: PasswordFile = None,
                      ca_file: CaFile = None, data_dir: DataDir = None,
                      json: Json = False) -> None:
    """List data centers with their status and storage type."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        dcs = client.get("/datacenters").get("data_center", [])
    if json:
        as_json(dcs)
        return
    table("Data centers", ["name", "status", "storage", "description", "id"], [
        (d["name"], d["status"], "local" if d.get("local") else "shared",
         d.get("description", ""), d["id"]) for d in dcs])


@app.command()
@reports_errors
def add(name: Annotated[str, typer.Argument(help="The new data center's name.")],
        description: Description = None,
        local: Annotated[bool, typer.Option(help="Local storage (one host) "
                                             "instead of shared.")] = False,
        url: Url = None, user: User = None, password_file: PasswordFile = None,
        ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """Add a data center (it gets its management network, ovirtmgmt)."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        dc = client.post("/datacenters", {"name": name, "local": local,
                                          **changes(description=description)})
    report(dc, json, f"Data center {dc['name']} added ({dc['id']})")


@app.command()
@reports_errors
def update(data_center: Name,
           name: Annotated[str | None, typer.Option(help="A new name.")] = None,
           description: Description = None,
           url: Url = None, user: User = None, password_file: PasswordFile = None,
           ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """Rename a data center or change its description."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        dc = resolve(client, "datacenters", "data_center", data_center)
        dc = client.put(f"/datacenters/{dc['id']}", changes(name=name, description=description))
    report(dc, json, f"Data center {dc['name']} updated")


@app.command()
@reports_errors
def remove(data_center: Name, url: Url = None, user: User = None,
           password_file: PasswordFile = None, ca_file: CaFile = None,
           data_dir: DataDir = None) -> None:
    """Remove a data center that has no clusters and no storage domains."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        dc = resolve(client, "datacenters", "data_center", data_center)
        client.delete(f"/datacenters/{dc['id']}")
    report({}, False, f"Data center {dc['name']} removed")
