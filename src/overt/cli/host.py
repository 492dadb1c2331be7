"""`overt host`: the hosts the engine manages."""

from __future__ import annotations

import typer

from overt.cli.errors import reports_errors
from overt.cli.options import CaFile, DataDir, Json, PasswordFile, Url, User, connect
from overt.cli.output import as_json, human_bytes, table
from overt.cli.output import console as _console

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
    table("Hosts", ["name", "status", "address", "cluster", "VMs", "memory", "id",
                    "key fingerprint"], [
        (h["name"], h["status"], h["address"], clusters.get(h.get("cluster", {}).get("id"), ""),
         h.get("summary", {}).get("active", 0), human_bytes(h.get("memory")), h["id"],
         (h.get("ssh") or {}).get("fingerprint", ""))
        for h in hosts])


def say(text: str) -> None:
    _console.print(text, highlight=False, soft_wrap=True)


@app.command("add")
@reports_errors
def add_host(name: str, address: str,
             port: int = typer.Option(54321, help="The node agent's port."),
             cluster: str = typer.Option("Default", help="The cluster to put it in."),
             fingerprint: str | None = typer.Option(
                 None, help="The node's key fingerprint, as `overt node` logs it; else the "
                 "node must be started with the enrollment token printed here."),
             url: Url = None, user: User = None, password_file: PasswordFile = None,
             ca_file: CaFile = None, data_dir: DataDir = None) -> None:
    """Add a host by address; prints the one-time token to start its node with."""
    body: dict[str, object] = {"name": name, "address": address, "port": port,
                               "cluster": {"name": cluster}}
    if fingerprint:
        body["ssh"] = {"fingerprint": fingerprint}
    client = connect(url, user, password_file, ca_file, data_dir)
    try:
        host = client.post("/hosts", body)
    finally:
        client.close()
    say(f"host {host['name']} added ({host['id']}); the engine enrolls it at {address}:{port}")
    if not fingerprint:
        say("start its node with this one-time enrollment token (shown only now):")
        say(f"  overt node --enroll-token {host['enrollment_token']}")


@app.command("approve")
@reports_errors
def approve_host(host_id: str, fingerprint: str = typer.Option(
                     ..., help="The key fingerprint the node logs (must match the host's)."),
                 url: Url = None, user: User = None, password_file: PasswordFile = None,
                 ca_file: CaFile = None, data_dir: DataDir = None) -> None:
    """Approve a node that announced itself, for the key it showed (only that key)."""
    client = connect(url, user, password_file, ca_file, data_dir)
    try:
        client.post(f"/hosts/{host_id}/approve", {"host": {"ssh": {"fingerprint": fingerprint}}})
    finally:
        client.close()
    say(f"host {host_id} approved for key {fingerprint}")
