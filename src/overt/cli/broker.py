"""`overt broker`: a broker for fully managed mode on this machine (development, trials).

A production broker is set up by its operator (docs/broker.md); this command does
the same steps on this machine's own RabbitMQ, with fresh random passwords.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Annotated

import typer

from overt.bus.amqp.admin import BrokerAdmin, BrokerAdminError
from overt.bus.amqp.url import broker_url
from overt.cli.errors import reports_errors, stderr
from overt.pki.certs import write_private
from overt.system.daemons import ensure_rabbitmq, ensure_rabbitmq_admin

app = typer.Typer(help="A RabbitMQ broker for fully managed mode.", no_args_is_help=True)

DEFAULT_DIR = Path("/etc/overt")


@app.command("setup-local")
@reports_errors
def setup_local(
    vhost: Annotated[str, typer.Option(help="The broker vhost of this Overt installation.")]
    = "overt",
    directory: Annotated[Path, typer.Option(help="Where the URL files are written (0600).")]
    = DEFAULT_DIR,
    host: Annotated[str, typer.Option(help="The broker's address in the URLs (nodes of the "
                                           "lab reach this machine at its management .1).")]
    = "127.0.0.1",
) -> None:
    """Start this machine's RabbitMQ if needed, then make a vhost, an administrator
    (`overt-admin`) and an engine account (`overt-engine`) with random passwords, and write
    their URLs to DIRECTORY/broker-admin.url and DIRECTORY/broker-engine.url."""
    ensure_rabbitmq()
    admin_password = secrets.token_urlsafe(24)
    ensure_rabbitmq_admin("overt-admin", admin_password, vhost=vhost)
    admin_url = broker_url("amqp", "overt-admin", admin_password, host, 5672, vhost)
    engine_password = secrets.token_urlsafe(24)

    async def engine_account() -> None:
        async with BrokerAdmin.for_broker(admin_url) as admin:
            await admin.ensure_engine_user("overt-engine", engine_password)

    try:
        asyncio.run(engine_account())
    except BrokerAdminError as exc:
        stderr.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    engine_url = broker_url("amqp", "overt-engine", engine_password, host, 5672, vhost)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(directory / "broker-admin.url", (admin_url + "\n").encode())
    write_private(directory / "broker-engine.url", (engine_url + "\n").encode())
    typer.echo(f"broker ready: vhost {vhost!r} on {host}:5672")
    typer.echo(f"  administrator URL (api process only): {directory / 'broker-admin.url'}")
    typer.echo(f"  engine URL (worker, monitor):         {directory / 'broker-engine.url'}")
    typer.echo(f"try: overt demo --bus-file {directory / 'broker-admin.url'}")
