"""`overt network`: list, add, update and remove logical networks; attach one to a host's
NIC or bond (with its IPv4 and IPv6 addressing) and detach it."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from overt.cli.errors import reports_errors
from overt.cli.host_setup import assignments, attach_network, detach_network
from overt.cli.objects import changes, names_by_id, report, resolve
from overt.cli.options import CaFile, DataDir, Json, PasswordFile, Url, User, connect
from overt.cli.output import as_json, table

app = typer.Typer(help="Logical networks.", no_args_is_help=True)
Name = Annotated[str, typer.Argument(help="The network's name or id.")]
Description = Annotated[str | None, typer.Option(help="A description.")]
Vlan = Annotated[int | None, typer.Option(help="802.1Q VLAN id (0-4094).")]
Mtu = Annotated[int | None, typer.Option(help="MTU in bytes (0: the default, 1500).")]
Usage = Annotated[list[str] | None, typer.Option(
    "--usage", help="A role: vm, migration, display, management (repeat for several).")]


def _body(name: str | None, description: str | None, vlan: int | None, mtu: int | None,
          usage: list[str] | None) -> dict[str, Any]:
    body = changes(name=name, description=description, mtu=mtu)
    if vlan is not None:
        body["vlan"] = {"id": vlan}
    if usage:
        body["usages"] = {"usage": usage}
    return body


@app.command("list")
@reports_errors
def list_networks(url: Url = None, user: User = None, password_file: PasswordFile = None,
                  ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """List networks with their data center, VLAN and roles."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        networks = client.get("/networks").get("network", [])
        dcs = names_by_id(client, "datacenters", "data_center")
    if json:
        as_json(networks)
        return
    table("Networks", ["name", "data center", "VLAN", "MTU", "usages", "id"], [
        (n["name"], dcs.get(n.get("data_center", {}).get("id"), ""),
         n.get("vlan", {}).get("id", ""), n.get("mtu") or "default",
         ", ".join(n.get("usages", {}).get("usage", [])), n["id"]) for n in networks])


@app.command()
@reports_errors
def add(name: Annotated[str, typer.Argument(help="The new network's name (at most 15 "
                                            "letters, digits, '-' or '_').")],
        datacenter: Annotated[str, typer.Option(help="Its data center.")] = "Default",
        description: Description = None, vlan: Vlan = None, mtu: Mtu = None,
        usage: Usage = None,
        url: Url = None, user: User = None, password_file: PasswordFile = None,
        ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """Add a network to a data center (with a vNIC profile of the same name)."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        dc = resolve(client, "datacenters", "data_center", datacenter)
        network = client.post("/networks", {**_body(name, description, vlan, mtu, usage),
                                            "data_center": {"id": dc["id"]}})
    report(network, json, f"Network {network['name']} added to data center {dc['name']}")


@app.command()
@reports_errors
def update(network: Name,
           name: Annotated[str | None, typer.Option(help="A new name.")] = None,
           description: Description = None, vlan: Vlan = None, mtu: Mtu = None,
           usage: Usage = None,
           url: Url = None, user: User = None, password_file: PasswordFile = None,
           ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """Change a network (its name, VLAN and MTU only while no VM NIC uses it)."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        found = resolve(client, "networks", "network", network)
        updated = client.put(f"/networks/{found['id']}",
                             _body(name, description, vlan, mtu, usage))
    report(updated, json, f"Network {updated['name']} updated")


@app.command()
@reports_errors
def remove(network: Name, url: Url = None, user: User = None,
           password_file: PasswordFile = None, ca_file: CaFile = None,
           data_dir: DataDir = None) -> None:
    """Remove a network no VM NIC uses (never the management network)."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        found = resolve(client, "networks", "network", network)
        client.delete(f"/networks/{found['id']}")
    report({}, False, f"Network {found['name']} removed")


HostOption = Annotated[str, typer.Option("--host", help="The host's name or id.")]


@app.command()
@reports_errors
def attach(network: Name, host: HostOption,
           nic: Annotated[str, typer.Option(help="The host's NIC or bond.")],
           ipv4: Annotated[str, typer.Option(
               help="none, dhcp or static:ADDRESS/NETMASK.")] = "none",
           ipv4_gateway: Annotated[str | None, typer.Option(help="IPv4 gateway.")] = None,
           ipv6: Annotated[str, typer.Option(
               help="none, dhcp, autoconf or static:ADDRESS/PREFIX.")] = "none",
           ipv6_gateway: Annotated[str | None, typer.Option(help="IPv6 gateway.")] = None,
           url: Url = None, user: User = None, password_file: PasswordFile = None,
           ca_file: CaFile = None, data_dir: DataDir = None) -> None:
    """Put a network on a host's NIC or bond (or change its addressing there)."""
    ip = assignments(ipv4, ipv4_gateway, ipv6, ipv6_gateway)
    with connect(url, user, password_file, ca_file, data_dir) as client:
        found = resolve(client, "networks", "network", network)
        target = resolve(client, "hosts", "host", host)
        attach_network(client, found, target, nic, ip)
    report({}, False, f"Network {found['name']} attached to {nic} of host {target['name']} "
                      f"(IPv4 {ipv4}, IPv6 {ipv6})")


@app.command()
@reports_errors
def detach(network: Name, host: HostOption, url: Url = None, user: User = None,
           password_file: PasswordFile = None, ca_file: CaFile = None,
           data_dir: DataDir = None) -> None:
    """Take a network off a host (never the management network)."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        found = resolve(client, "networks", "network", network)
        target = resolve(client, "hosts", "host", host)
        detach_network(client, found, target)
    report({}, False, f"Network {found['name']} detached from host {target['name']}")
