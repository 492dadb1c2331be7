"""Entry point of the `overt` command: one Typer app with a sub-app per area.

An area's module is imported only when its command runs (or when the whole command
list is shown): `overt vm list` does not load the engine, the broker's transports or
libvirt's bindings, which cost more than the request itself."""

from __future__ import annotations

import importlib

import typer
from typer._click.core import Command, Context  # Typer keeps its own click
from typer.core import TyperGroup

from overt import __version__

# name -> (module, attribute): a function that is the command, or a Typer sub-app.
# Listed as before they were loaded on demand: the commands, then the areas.
COMMANDS: dict[str, tuple[str, str]] = {
    "engine": ("overt.cli.engine", "engine"),
    "lease-keeper": ("overt.cli.lease_keeper", "lease_keeper"),
    "demo": ("overt.cli.demo", "demo"),
    "node": ("overt.cli.node", "node"),
}
AREAS: dict[str, tuple[str, str]] = {
    "lab": ("overt.cli.lab", "app"),
    "broker": ("overt.cli.broker", "app"),
    "simulate": ("overt.cli.simulate", "app"),
    "vm": ("overt.cli.vm", "app"),
    "host": ("overt.cli.host", "app"),
    "datacenter": ("overt.cli.datacenter", "app"),
    "cluster": ("overt.cli.cluster", "app"),
    "network": ("overt.cli.network", "app"),
    "storage": ("overt.cli.storage", "app"),
    "disk": ("overt.cli.disk", "app"),
    "iso": ("overt.cli.iso", "app"),
    "pki": ("overt.cli.pki", "app"),
    "notify": ("overt.cli.notify", "app"),
    "snmp": ("overt.cli.snmp", "app"),
    "provision": ("overt.cli.provision", "app"),
    "node-image": ("overt.cli.node_image", "app"),
    "user": ("overt.cli.access", "user_app"),
    "permission": ("overt.cli.access", "permission_app"),
    "auth": ("overt.cli.access", "auth_app"),
}
ON_DEMAND = {**COMMANDS, **AREAS}


def load_area(name: str) -> Command:
    """The click command of area `name`, its module imported now."""
    module, attribute = ON_DEMAND[name]
    found = getattr(importlib.import_module(module), attribute)
    holder = typer.Typer()
    if isinstance(found, typer.Typer):
        holder.add_typer(found, name=name)  # a group, even of one command
    else:
        holder.command(name=name)(found)
        holder.command(name="-")(version)  # two commands: built as a group, not collapsed
    group = typer.main.get_command(holder)
    assert isinstance(group, TyperGroup)
    return group.commands[name]


class Areas(TyperGroup):
    """The top-level command: its own commands, then each area loaded on demand."""

    def list_commands(self, ctx: Context) -> list[str]:
        return [*COMMANDS, *super().list_commands(ctx), *AREAS]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name in ON_DEMAND:
            return load_area(cmd_name)
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    name="overt",
    help="Overt: an open virtualization manager (oVirt-compatible API).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=Areas,
)


@app.callback()
def overt() -> None:
    """Overt: an open virtualization manager (oVirt-compatible API)."""


@app.command()
def version() -> None:
    """Print Overt's version."""
    typer.echo(__version__)
