"""`overt lab`: a small datacenter on this machine."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from overt.cli.errors import reports_errors
from overt.lab.guest import build_guest_image
from overt.lab.lab import Lab
from overt.lab.topology import DEFAULT_ADDRESS_BLOCK, DEFAULT_PREFIX, LabSpec, Topology

app = typer.Typer(
    help="A small datacenter on this machine: hosts as network namespaces, three networks, "
    "a storage host with NFS and iSCSI, a libvirtd per node.",
    no_args_is_help=True,
)
console = Console()

Prefix = Annotated[str, typer.Option(envvar="OVERT_LAB_PREFIX",
                                     help="Name of the lab; prefixes its namespaces and links.")]


def _progress(step: str) -> None:
    console.print(f"[cyan]•[/] {step}", highlight=False)


@app.command()
@reports_errors
def up(
    nodes: Annotated[int, typer.Option("--nodes", "-n", help="How many hypervisor nodes.")] = 2,
    prefix: Prefix = DEFAULT_PREFIX,
    address_block: Annotated[str, typer.Option(
        help="IPv4 block for the lab's networks (management, storage, guest: its first "
        "three /24s).")] = DEFAULT_ADDRESS_BLOCK,
) -> None:
    """Build the lab (or repair it, when it is up with the same settings)."""
    spec = LabSpec(nodes=nodes, prefix=prefix, address_block=address_block)
    lab = Lab(Topology(spec), on_step=_progress)
    lab.up()
    print_status(lab)


@app.command()
@reports_errors
def down(prefix: Prefix = DEFAULT_PREFIX) -> None:
    """Remove every namespace, bridge, mount and process of the lab."""
    try:
        lab = Lab.find(prefix)
    except Exception:
        lab = Lab(Topology(LabSpec(nodes=1, prefix=prefix)))
    lab.on_step = _progress
    lab.down()
    console.print(f"lab {prefix!r} is down")


@app.command()
@reports_errors
def status(
    prefix: Prefix = DEFAULT_PREFIX,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the lab's hosts, addresses and services; exit 1 when something is not running."""
    lab = Lab.find(prefix)
    healthy = print_status(lab, as_json=as_json)
    if not healthy:
        raise typer.Exit(1)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@reports_errors
def exec(
    host: Annotated[str, typer.Argument(help="node1, node2, ... or storage")],
    command: Annotated[list[str], typer.Argument(help="The command to run, after --.")],
    prefix: Prefix = DEFAULT_PREFIX,
) -> None:
    """Run a command on a lab host (in its network and mount namespaces)."""
    argv = Lab.find(prefix).exec_argv(host, command)
    sys.stdout.flush()
    os.execvp(argv[0], argv)  # noqa: S606 - replaces this process, keeps the terminal


@app.command()
@reports_errors
def guest() -> None:
    """Build (or find in the cache) the test guest and print where its files are."""
    image = build_guest_image()
    for label, path in [("kernel", image.kernel), ("initrd", image.initrd),
                        ("raw disk", image.raw_disk), ("qcow2 disk", image.qcow2_disk)]:
        typer.echo(f"{label:>10}: {path}")


def print_status(lab: Lab, *, as_json: bool = False) -> bool:
    hosts = lab.status()
    topo = lab.topology
    if as_json:
        data = {
            "prefix": topo.spec.prefix,
            "engine_address": str(topo.engine_address()),
            "hosts": [
                {"name": h.name, "role": h.role.value, "addresses": h.addresses,
                 "running": h.healthy, "services": h.services,
                 **({"libvirt_uri": lab.hypervisor(h.name).uri} if h.role.value == "node" else {})}
                for h in hosts
            ],
        }
        typer.echo(json.dumps(data, indent=2))
        return all(h.healthy for h in hosts)
    table = Table(title=f"lab {topo.spec.prefix!r} (engine side: {topo.engine_address()})")
    for column in ("host", "role", "management", "storage", "services", "state"):
        table.add_column(column)
    for h in hosts:
        services = ", ".join(f"{name} {'up' if ok else 'DOWN'}" for name, ok in h.services.items())
        table.add_row(h.name, h.role.value, h.addresses.get("mgmt", "-"),
                      h.addresses.get("stor", "-"), services,
                      "[green]running[/]" if h.healthy else "[red]broken[/]")
    console.print(table)
    return all(h.healthy for h in hosts)
