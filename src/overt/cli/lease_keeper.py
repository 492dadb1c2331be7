"""`overt lease-keeper`: the node's storage lease keeper (a daemon apart from the agent)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Annotated

import typer

from overt.cli.errors import stderr
from overt.logs import configure_logging
from overt.node.leases.service import host_uuid, run_keeper


def lease_keeper(
    data_dir: Annotated[Path, typer.Option(
        help="The node's data directory; the keeper keeps its socket and state in leases/.")]
    = Path("/var/lib/overt/node"),
    libvirt_uri: Annotated[str, typer.Option(
        help="Where to stop VMs whose lease cannot be renewed.")] = "qemu:///system",
    host_id: Annotated[str | None, typer.Option(
        help="This host's id in the leases (default: libvirt's host UUID, as the agent's).")]
    = None,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "INFO",
) -> None:
    """Hold and renew this host's storage leases until SIGTERM. `overt node` starts it
    when none runs; restarting the agent leaves it (and the leases) alone."""
    configure_logging(log_level, "text")
    try:
        owner = uuid.UUID(host_id) if host_id else host_uuid(libvirt_uri)
        asyncio.run(run_keeper(owner, data_dir / "leases", libvirt_uri))
    except (OSError, ValueError) as exc:
        stderr.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
