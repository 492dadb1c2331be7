"""`overt host`: the hosts the engine manages."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

import typer

from overt.cli.client import ApiClient, ApiError
from overt.cli.errors import reports_errors
from overt.cli.host_setup import bond_app
from overt.cli.options import CaFile, DataDir, Json, PasswordFile, Url, User, connect
from overt.cli.output import as_json, console, human_bytes, progress, table

app = typer.Typer(help="Hosts (managed nodes).", no_args_is_help=True)
app.add_typer(bond_app, name="bond")


@app.command("list")
@reports_errors
def list_hosts(url: Url = None, user: User = None, password_file: PasswordFile = None,
               ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """List hosts with their status, address and load."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        hosts = client.get("/hosts").get("host", [])
        clusters = {c["id"]: c["name"] for c in client.get("/clusters").get("cluster", [])}
    if json:
        as_json(hosts)
        return
    table("Hosts", ["name", "status", "address", "cluster", "VMs", "memory", "id",
                    "key fingerprint"], [
        (h["name"], h["status"], h["address"], clusters.get(h.get("cluster", {}).get("id"), ""),
         h.get("summary", {}).get("active", 0), human_bytes(h.get("memory")), h["id"],
         (h.get("ssh") or {}).get("fingerprint", ""))
        for h in hosts])


def _host_of(client: ApiClient, name_or_id: str) -> dict[str, Any]:
    try:
        uuid.UUID(name_or_id)
    except ValueError:
        return client.find("hosts", "host", name_or_id)
    return dict(client.get(f"/hosts/{name_or_id}"))


@app.command()
@reports_errors
def nics(name: Annotated[str, typer.Argument(help="Host name or id.")], url: Url = None,
         user: User = None, password_file: PasswordFile = None, ca_file: CaFile = None,
         data_dir: DataDir = None, json: Json = False) -> None:
    """List a host's network interfaces with the networks attached to each."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        host = _host_of(client, name)
        reported = client.get(f"/hosts/{host['id']}/nics").get("host_nic", [])
        attachments = client.get(f"/hosts/{host['id']}/networkattachments").get(
            "network_attachment", [])
        networks = {n["id"]: n["name"] for n in client.get("/networks").get("network", [])}
    carried: dict[str, list[str]] = {}
    for attachment in attachments:
        network = networks.get(attachment["network"]["id"], attachment["network"]["id"])
        state = "" if attachment.get("in_sync") else " (out of sync)"
        carried.setdefault(attachment["host_nic"]["id"], []).append(network + state)
    if json:
        as_json([{**nic, "networks": carried.get(nic["id"], [])} for nic in reported])
        return
    nics_only = [n for n in reported if not n.get("bonding")]
    table(f"Network interfaces of host {host['name']}",
          ["name", "MAC", "address", "MTU", "speed", "networks"], [
        (n["name"], (n.get("mac") or {}).get("address", ""),
         (n.get("ip") or {}).get("address", ""), n.get("mtu") or "",
         f"{int(n['speed']) // 1_000_000} Mb/s" if n.get("speed") else "",
         ", ".join(carried.get(n["id"], []))) for n in nics_only])
    bonds = [n for n in reported if n.get("bonding")]
    if bonds:
        links = {n["name"]: n.get("status", "") for n in nics_only}
        table(f"Bonds of host {host['name']}", ["name", "mode", "slaves", "active", "state",
                                                 "networks"], [
            (*_bonding(b, links), ", ".join(carried.get(b["id"], []))) for b in bonds])


def _bonding(nic: dict[str, Any], links: dict[str, str]) -> tuple[str, ...]:
    """A bond's name, mode, slaves (with their links), active slave and whether the host
    has it as the engine defines it."""
    bonding = nic["bonding"]
    options = {o["name"]: o["value"] for o in (bonding.get("options") or {}).get("option", [])}
    slaves = [s["name"] for s in (bonding.get("slaves") or {}).get("host_nic", [])]
    properties = {p["name"]: p["value"]
                  for p in (nic.get("properties") or {}).get("property", [])}
    return (nic["name"], options.get("mode", "1"),
            ", ".join(f"{s} ({links[s]})" if links.get(s) else s for s in slaves),
            (bonding.get("active_slave") or {}).get("name", ""),
            "out of sync" if properties.get("in_sync") == "false" else "in sync")


@app.command()
@reports_errors
def install(name: Annotated[str, typer.Argument(help="Host name or id.")], url: Url = None,
            user: User = None, password_file: PasswordFile = None, ca_file: CaFile = None,
            data_dir: DataDir = None,
            timeout: Annotated[float, typer.Option(help="Seconds to wait for the host to be "
                                                        "up.")] = 300) -> None:
    """Install a host again (after a failed install, or from maintenance) and wait until it
    is up: the engine enrolls its agent, or reconnects one that kept its certificate."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
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


def say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True)


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
    with connect(url, user, password_file, ca_file, data_dir) as client:
        host = client.post("/hosts", body)
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
    with connect(url, user, password_file, ca_file, data_dir) as client:
        client.post(f"/hosts/{host_id}/approve", {"host": {"ssh": {"fingerprint": fingerprint}}})
    say(f"host {host_id} approved for key {fingerprint}")


FENCE_TYPES = ("status", "start", "stop", "restart")


@app.command("fence")
@reports_errors
def fence_host(name: Annotated[str, typer.Argument(help="Host name or id.")],
               fence_type: Annotated[str, typer.Argument(
                   help="status, start, stop or restart (through the host's power management)")],
               url: Url = None, user: User = None, password_file: PasswordFile = None,
               ca_file: CaFile = None, data_dir: DataDir = None) -> None:
    """Power a host on or off (or ask its power status) through its BMC."""
    if fence_type not in FENCE_TYPES:
        raise ApiError(f"the fence type must be one of {', '.join(FENCE_TYPES)}, "
                       f"not {fence_type!r}")
    with connect(url, user, password_file, ca_file, data_dir) as client:
        host = _host_of(client, name)
        with progress(f"Power management {fence_type} of host {host['name']}"):
            reply = client.post(f"/hosts/{host['id']}/fence", {"fence_type": fence_type})
    status = (reply.get("power_management") or {}).get("status", "unknown")
    say(f"host {host['name']}: {fence_type} done, power {status}")


@app.command()
@reports_errors
def maintenance(name: Annotated[str, typer.Argument(help="Host name or id.")], url: Url = None,
                user: User = None, password_file: PasswordFile = None, ca_file: CaFile = None,
                data_dir: DataDir = None,
                timeout: Annotated[float, typer.Option(help="Seconds to wait for the host's "
                                                            "VMs to move.")] = 900) -> None:
    """Switch a host to maintenance: its running VMs are live-migrated to other hosts of
    its cluster first; a VM that cannot move stops the maintenance (nothing is powered off)."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        host = _host_of(client, name)
        correlation = str(uuid.uuid4())
        reply = client.post(f"/hosts/{host['id']}/deactivate", {}, correlation_id=correlation)
        what = f"Switching host {host['name']} to maintenance"
        if reply.get("job"):
            with progress(what) as on_step:
                job = client.follow_job(reply["job"]["href"], on_step, timeout=timeout)
            if job["status"] != "finished":
                raise ApiError(client.failure_of(correlation))
        status = client.get(f"/hosts/{host['id']}")["status"]
        console.print(f"[green]✓[/] {what}: host {host['name']} is {status}")


@app.command()
@reports_errors
def activate(name: Annotated[str, typer.Argument(help="Host name or id.")], url: Url = None,
             user: User = None, password_file: PasswordFile = None, ca_file: CaFile = None,
             data_dir: DataDir = None,
             timeout: Annotated[float, typer.Option(help="Seconds to wait for the host to be "
                                                         "up.")] = 120) -> None:
    """Bring a host back from maintenance and wait until the engine has it up."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        host = _host_of(client, name)
        client.post(f"/hosts/{host['id']}/activate", {})
        deadline = time.monotonic() + timeout
        with progress(f"Activating host {host['name']}"):
            while (status := client.get(f"/hosts/{host['id']}")["status"]) != "up":
                if status in ("non_responsive", "non_operational", "error", "maintenance") \
                        or time.monotonic() > deadline:
                    raise ApiError(f"host {host['name']} is {status}, not up")
                time.sleep(0.5)
        console.print(f"[green]✓[/] host {host['name']} is up")
