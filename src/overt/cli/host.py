"""`overt host`: the hosts the engine manages."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

import typer

from overt.cli.client import ApiClient, ApiError
from overt.cli.errors import reports_errors
from overt.cli.options import CaFile, DataDir, Json, PasswordFile, Url, User, connect
from overt.cli.output import as_json, console, human_bytes, progress, table

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


def _host_of(client: ApiClient, name_or_id: str) -> dict[str, Any]:
    try:
        uuid.UUID(name_or_id)
    except ValueError:
        return client.find("hosts", "host", name_or_id)
    return dict(client.get(f"/hosts/{name_or_id}"))


@app.command()
@reports_errors
def install(name: Annotated[str, typer.Argument(help="Host name or id.")], url: Url = None,
            user: User = None, password_file: PasswordFile = None, ca_file: CaFile = None,
            data_dir: DataDir = None,
            timeout: Annotated[float, typer.Option(help="Seconds to wait for the host to be "
                                                        "up.")] = 300) -> None:
    """Install a host again (after a failed install, or from maintenance) and wait until it
    is up: the engine enrolls its agent, or reconnects one that kept its certificate."""
    client = connect(url, user, password_file, ca_file, data_dir)
    try:
        host = _host_of(client, name)
        correlation = str(uuid.uuid4())
        reply = client.post(f"/hosts/{host['id']}/install", {}, correlation_id=correlation)
        what = f"Installing host {host['name']}"
        with progress(what) as on_step:
            job = client.follow_job(reply["job"]["href"], on_step, timeout=timeout)
        if job["status"] != "finished":
            raise ApiError(client.failure_of(correlation))
        deadline = time.monotonic() + timeout
        while (status := client.get(f"/hosts/{host['id']}")["status"]) != "up":
            if status in ("install_failed", "non_operational", "error") \
                    or time.monotonic() > deadline:
                raise ApiError(f"host {host['name']} is {status}, not up")
            time.sleep(0.5)
        console.print(f"[green]✓[/] {what}: host {host['name']} is up")
    finally:
        client.close()
