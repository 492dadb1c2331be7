"""`overt demo`: the all-in-one on the embedded defaults (SQLite, direct transport), or
in fully managed mode through a broker (`--bus-file FILE` holding the administrator's
amqp(s):// URL, or OVERT_DEMO_BUS: never the URL itself on the command line, where `ps`
shows its password to every user of the machine)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from overt.allinone import AllInOne, DemoError, DemoOptions, Stopped
from overt.cli.errors import reports_errors
from overt.config import SettingsError
from overt.logs import configure_logging

console = Console()


def _ready(demo: AllInOne) -> None:
    data = demo.options.data_dir
    password = demo.runtime.generated_password
    console.print(f"\n[bold green]Overt is ready[/] at {demo.url}")
    console.print(f"  portal:    {demo.portal_url}  (the web admin portal)")
    console.print("  user:      admin@internal")
    if password:
        console.print(f"  password:  {password}   (shown once; also in {data}/admin-password)")
    else:
        console.print(f"  password:  in {data}/admin-password")
    console.print(f"  CA:        {demo.runtime.pki.ca_file}")
    if demo.managed:
        console.print("  mode:      fully managed: engine and agent talk through the broker")
    console.print("  try:       overt vm create web1 --template test-guest --memory 256M"
                  f"{'' if data == Path('/var/lib/overt/engine') else f' --data-dir {data}'}")
    console.print("             overt vm start web1; overt vm list; overt host list")
    console.print("  SDK:       ovirtsdk4.Connection(url=..., username='admin@internal', "
                  "password=..., ca_file=...)")
    console.print("Ctrl-C stops the engine and the agent; running VMs keep running.\n")


def _bus(bus: str, bus_file: Path | None, source: object) -> str:
    """The transport: a broker URL with a password comes from a file or the environment."""
    if bus_file is not None:
        try:
            return bus_file.read_text().strip()
        except OSError as exc:
            raise DemoError(f"cannot read {bus_file}: {exc.strerror}") from None
    if getattr(source, "name", None) == "COMMANDLINE" and "@" in bus:
        raise DemoError("the broker URL on the command line shows its password to everyone "
                        "on this machine (`ps`); put it in a file (mode 0600) and give "
                        "--bus-file FILE, or set OVERT_DEMO_BUS")
    return bus


@reports_errors
def demo(
    ctx: typer.Context,
    data_dir: Annotated[Path, typer.Option(help="Where the engine keeps its database, "
                                                "certificates and password.")]
    = Path("/var/lib/overt/engine"),
    port: Annotated[int, typer.Option(help="HTTPS port of the API.")] = 8443,
    db: Annotated[str | None, typer.Option(
        help="Database URL (default: SQLite in the data directory); a URL with a password is "
        "better given as OVERT_DEMO_DB, which `ps` does not show.",
        envvar="OVERT_DEMO_DB")] = None,
    bus: Annotated[str, typer.Option(
        help="`direct`, or (as OVERT_DEMO_BUS, not on the command line) the amqp(s):// URL of "
        "a broker administrator for fully managed mode.",
        envvar="OVERT_DEMO_BUS")] = "direct",
    bus_file: Annotated[Path | None, typer.Option(
        help="A file (mode 0600) holding the broker administrator's amqp(s):// URL, for fully "
        "managed mode (`overt broker setup-local` makes one on this machine).")] = None,
    public_address: Annotated[str, typer.Option(
        help="Address nodes use to reach the engine (the lab's is 10.77.0.1).")] = "127.0.0.1",
    gateway_port: Annotated[int, typer.Option(help="Port of the node gateway.")] = 8444,
    node_port: Annotated[int, typer.Option(help="Port of this machine's agent.")] = 54321,
    images_dir: Annotated[Path, typer.Option(help="Local storage: where VM disks live.")]
    = Path("/var/lib/overt/images"),
    log_level: Annotated[str, typer.Option(help="Level of Overt's log lines (debug, info, "
                                                "warning).")] = "info",
    netsvc_file: Annotated[Path | None, typer.Option(
        help="Address plan of the managed networks (TOML): the engine then serves DHCP, DNS "
        "and NTP on them (docs/networks.md).")] = None,
) -> None:
    """Run the engine and an agent for this machine, enrolled as host 'local', with a local
    storage domain and the test-guest template. Ready when the API answers."""
    configure_logging("WARNING")
    logging.getLogger("overt").setLevel(log_level.upper())
    try:
        bus = _bus(bus, bus_file, ctx.get_parameter_source("bus"))
    except DemoError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    options = DemoOptions(data_dir=data_dir, port=port, db=db, bus=bus,
                          public_address=public_address, gateway_port=gateway_port,
                          node_port=node_port, images_dir=images_dir,
                          netsvc_file=netsvc_file)
    try:
        allinone = AllInOne(options, say=lambda text: console.print(f"[cyan]•[/] {text}"))
        asyncio.run(allinone.run(_ready))
    except (KeyboardInterrupt, asyncio.CancelledError, Stopped):
        pass
    except (DemoError, SettingsError) as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    console.print("Overt stopped; VMs that were running keep running.")
