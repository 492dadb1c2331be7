"""`overt cluster`: list, add, update and remove clusters."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from overt.cli import affinity
from overt.cli.errors import reports_errors
from overt.cli.objects import changes, names_by_id, report, resolve
from overt.cli.options import CaFile, DataDir, Json, PasswordFile, Url, User, connect
from overt.cli.output import as_json, table

app = typer.Typer(help="Clusters (groups of hosts VMs run on).", no_args_is_help=True)
Name = Annotated[str, typer.Argument(help="The cluster's name or id.")]
Description = Annotated[str | None, typer.Option(help="A description.")]
Overcommit = Annotated[int | None, typer.Option(
    "--memory-overcommit", help="Memory the scheduler may promise, in percent of the hosts' "
    "memory (100: none).")]
app.add_typer(affinity.app, name="affinity")


def _body(name: str | None, description: str | None, overcommit: int | None) -> dict[str, Any]:
    body = changes(name=name, description=description)
    if overcommit is not None:
        body["memory_policy"] = {"over_commit": {"percent": overcommit}}
    return body


@app.command("list")
@reports_errors
def list_clusters(url: Url = None, user: User = None, password_file: PasswordFile = None,
                  ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """List clusters with their data center."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        clusters = client.get("/clusters").get("cluster", [])
        dcs = names_by_id(client, "datacenters", "data_center")
    if json:
        as_json(clusters)
        return
    table("Clusters", ["name", "data center", "memory overcommit", "description", "id"], [
        (c["name"], dcs.get(c.get("data_center", {}).get("id"), ""),
         f"{c.get('memory_policy', {}).get('over_commit', {}).get('percent', 100)} %",
         c.get("description", ""), c["id"]) for c in clusters])


@app.command()
@reports_errors
def add(name: Annotated[str, typer.Argument(help="The new cluster's name.")],
        datacenter: Annotated[str, typer.Option(help="Its data center.")] = "Default",
        description: Description = None, memory_overcommit: Overcommit = None,
        url: Url = None, user: User = None, password_file: PasswordFile = None,
        ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """Add a cluster to a data center."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        dc = resolve(client, "datacenters", "data_center", datacenter)
        cluster = client.post("/clusters", {**_body(name, description, memory_overcommit),
                                            "data_center": {"id": dc["id"]}})
    report(cluster, json, f"Cluster {cluster['name']} added to data center {dc['name']}")


@app.command()
@reports_errors
def update(cluster: Name,
           name: Annotated[str | None, typer.Option(help="A new name.")] = None,
           description: Description = None, memory_overcommit: Overcommit = None,
           url: Url = None, user: User = None, password_file: PasswordFile = None,
           ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """Rename a cluster, or change its description or memory overcommit."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        found = resolve(client, "clusters", "cluster", cluster)
        updated = client.put(f"/clusters/{found['id']}",
                             _body(name, description, memory_overcommit))
    report(updated, json, f"Cluster {updated['name']} updated")


@app.command()
@reports_errors
def remove(cluster: Name, url: Url = None, user: User = None,
           password_file: PasswordFile = None, ca_file: CaFile = None,
           data_dir: DataDir = None) -> None:
    """Remove a cluster no host, VM or template uses."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        found = resolve(client, "clusters", "cluster", cluster)
        client.delete(f"/clusters/{found['id']}")
    report({}, False, f"Cluster {found['name']} removed")
