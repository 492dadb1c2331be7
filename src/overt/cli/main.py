"""Entry point of the `overt` command: one Typer app with a sub-app per area."""

import typer

from overt import __version__
from overt.cli import (
    access,
    broker,
    cluster,
    datacenter,
    disk,
    engine,
    host,
    iso,
    lab,
    network,
    notify,
    pki,
    simulate,
    snmp,
    storage,
    vm,
)
from overt.cli.demo import demo
from overt.cli.lease_keeper import lease_keeper
from overt.cli.node import node

app = typer.Typer(
    name="overt",
    help="Overt: an open virtualization manager (oVirt-compatible API).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(lab.app, name="lab")
app.add_typer(broker.app, name="broker")
app.add_typer(simulate.app, name="simulate")
app.command(name="engine")(engine.engine)
app.command(name="lease-keeper")(lease_keeper)
app.add_typer(vm.app, name="vm")
app.add_typer(host.app, name="host")
app.add_typer(datacenter.app, name="datacenter")
app.add_typer(cluster.app, name="cluster")
app.add_typer(network.app, name="network")
app.add_typer(storage.app, name="storage")
app.add_typer(disk.app, name="disk")
app.add_typer(iso.app, name="iso")
app.add_typer(pki.app, name="pki")
app.add_typer(notify.app, name="notify")
app.add_typer(snmp.app, name="snmp")
app.add_typer(access.user_app, name="user")
app.add_typer(access.permission_app, name="permission")
app.add_typer(access.auth_app, name="auth")
app.command()(demo)
app.command()(node)


@app.command()
def version() -> None:
    """Print Overt's version."""
    typer.echo(__version__)
