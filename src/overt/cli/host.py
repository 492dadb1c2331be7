"""`overt host`: the hosts the engine manages."""

from __future__ import annotations

import typer

from overt.cli.errors import reports_errors
from overt.cli.options import CaFile, DataDir, Json, PasswordFile, Url, User, connect
from overt.cli.output import as_json, human_bytes, table

app = typer.Typer(help="Hosts (managed nodes).", no_args_is_help=True)


@app.command("list")
@reports_errors
def list_hosts(url: Url = None, user: User = None, password_file: PasswordFile = None,
               ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """List hosts with their status, address and load."""
    client = connect(url, user, password_file, ca_file, data_dir)
    try:
        hosts = client.get("/hosts").get("host", [])
        clusters = {c["id"]: c["name"] for c in client.get("/clusters").get("cluster", [])}
    finally:
        client.close()
    if json:
        as_json(hosts)
        return
    table("Hosts", ["name", "status", "address", "cluster", "VMs", "memory", "id"], [
        (h["name"], h["status"], h["address"], clusters.get(h.get("cluster", {}).get("id"), ""),
         h.get("summary", {}).get("active", 0), human_bytes(h.get("memory")), h["id"])
        for h in hosts])
