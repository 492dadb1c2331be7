"""`overt host bond add|remove` and `overt network attach|detach`: a host's bonds and
network attachments through `setupnetworks`, with the connectivity check, as the portal
and the SDK change them."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from overt.cli.client import ApiClient, ApiError
from overt.cli.errors import reports_errors
from overt.cli.objects import report, resolve
from overt.cli.options import CaFile, DataDir, PasswordFile, Url, User, connect

bond_app = typer.Typer(help="A host's bonds (Open vSwitch bonds of its NICs).",
                       no_args_is_help=True)
Host = Annotated[str, typer.Argument(help="Host name or id.")]
BondName = Annotated[str, typer.Argument(help="The bond's name: bond followed by a number.")]
CONNECTIVITY_TIMEOUT_S = 60


def setup_networks(client: ApiClient, host: dict[str, Any], body: dict[str, Any]) -> None:
    """One `setupnetworks` call, with the connectivity check and a commit once applied."""
    client.post(f"/hosts/{host['id']}/setupnetworks", {
        **body, "check_connectivity": True,
        "connectivity_timeout": CONNECTIVITY_TIMEOUT_S, "commit_on_success": True})


@bond_app.command("add")
@reports_errors
def add_bond(host: Host, name: BondName,
             slave: Annotated[list[str], typer.Option(
                 "--slave", help="A NIC to bond (repeat: at least two).")],
             mode: Annotated[str, typer.Option(
                 help="1 or active-backup, 4 or 802.3ad (LACP), balance-slb.")] = "1",
             url: Url = None, user: User = None, password_file: PasswordFile = None,
             ca_file: CaFile = None, data_dir: DataDir = None) -> None:
    """Bond NICs of a host (or change a bond's slaves or mode)."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        found = resolve(client, "hosts", "host", host)
        setup_networks(client, found, {"modified_bonds": {"host_nic": [{
            "name": name, "bonding": {
                "options": {"option": [{"name": "mode", "value": mode}]},
                "slaves": {"host_nic": [{"name": s} for s in slave]}}}]}})
    report({}, False, f"Bond {name} of host {found['name']} set up: {', '.join(slave)}")


@bond_app.command("remove")
@reports_errors
def remove_bond(host: Host, name: BondName, url: Url = None, user: User = None,
                password_file: PasswordFile = None, ca_file: CaFile = None,
                data_dir: DataDir = None) -> None:
    """Remove a bond no network rides on."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        found = resolve(client, "hosts", "host", host)
        setup_networks(client, found, {"removed_bonds": {"host_nic": [{"name": name}]}})
    report({}, False, f"Bond {name} of host {found['name']} removed")


def assignments(ipv4: str, ipv4_gateway: str | None, ipv6: str,
                ipv6_gateway: str | None) -> list[dict[str, Any]]:
    """`none`, `dhcp`, `static:ADDRESS/NETMASK` (IPv4) and `none`, `dhcp`, `autoconf`,
    `static:ADDRESS/PREFIX` (IPv6) as oVirt's `ip_address_assignments`."""
    found = []
    for version, text, gateway in (("v4", ipv4, ipv4_gateway), ("v6", ipv6, ipv6_gateway)):
        method, _, address = text.partition(":")
        ip: dict[str, Any] = {"version": version}
        if method == "static":
            ip_address, _, mask = address.partition("/")
            if not ip_address or not mask:
                raise ApiError(f"--ip{version} static needs an address and a "
                               f"{'netmask' if version == 'v4' else 'prefix length'}: "
                               f"static:ADDRESS/{'NETMASK' if version == 'v4' else 'PREFIX'}")
            ip.update(address=ip_address, netmask=mask)
            if gateway:
                ip["gateway"] = gateway
        elif address:
            raise ApiError(f"--ip{version} {method} takes no address")
        found.append({"assignment_method": method, "ip": ip})
    return found


def attach_network(client: ApiClient, network: dict[str, Any], host: dict[str, Any],
                   nic: str, ip_assignments: list[dict[str, Any]]) -> None:
    current = client.get(f"/hosts/{host['id']}/networkattachments").get(
        "network_attachment", [])
    existing = next((a for a in current if a["network"]["id"] == network["id"]), None)
    attachment: dict[str, Any] = {
        "network": {"id": network["id"]}, "host_nic": {"name": nic},
        "ip_address_assignments": {"ip_address_assignment": ip_assignments}}
    if existing is not None:
        attachment["id"] = existing["id"]
    setup_networks(client, host, {"modified_network_attachments": {
        "network_attachment": [attachment]}})


def detach_network(client: ApiClient, network: dict[str, Any], host: dict[str, Any]) -> None:
    current = client.get(f"/hosts/{host['id']}/networkattachments").get(
        "network_attachment", [])
    existing = next((a for a in current if a["network"]["id"] == network["id"]), None)
    if existing is None:
        raise ApiError(f"host {host['name']} does not carry network {network['name']}")
    setup_networks(client, host, {"removed_network_attachments": {
        "network_attachment": [{"id": existing["id"]}]}})
