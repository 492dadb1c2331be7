"""`overt simulate`: SIMULATED nodes for scale benchmarks and tests (nothing runs on them)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Annotated

import typer

from overt.cli.errors import reports_errors
from overt.logs import configure_logging
from overt.node.agent import AgentTimings
from overt.node.simulated.fleet import FleetSpec, SimulatedFleet
from overt.node.simulated.hypervisor import SimulatedTimings

app = typer.Typer(help="Simulated nodes: real agents on a make-believe hypervisor, for scale "
                  "benchmarks and tests. They run no VM.", no_args_is_help=True)


@app.command()
@reports_errors
def nodes(
    engine_url: Annotated[str, typer.Option(help="The engine's node gateway "
                                                 "(https://ENGINE:8444); nodes announce there.")],
    data_dir: Annotated[Path, typer.Option(help="One directory per node below it (identity, "
                                                "broker account).")],
    count: Annotated[int, typer.Option(min=1, help="How many nodes.")] = 1,
    first: Annotated[int, typer.Option(min=0, help="Index of the first node (processes "
                                                   "sharing a fleet take turns).")] = 0,
    seed: Annotated[str, typer.Option(help="Names the fleet; node and VM ids derive from it.")]
    = "sim",
    bus: Annotated[str, typer.Option(help="amqp (fully managed) or direct.")] = "amqp",
    engine_ca_file: Annotated[Path | None, typer.Option(help="The engine CA to trust.")] = None,
    vms_per_node: Annotated[int, typer.Option(min=0, help="VMs each node already runs.")] = 0,
    vm_memory: Annotated[int, typer.Option(help="MiB of each of those VMs.")] = 64,
    stats_interval: Annotated[float, typer.Option(help="Seconds between stats samples.")] = 15.0,
    heartbeat_interval: Annotated[float, typer.Option(help="Seconds between heartbeats.")]
    = 5.0,
    start_delay: Annotated[float, typer.Option(help="Seconds a simulated VM start takes.")]
    = 0.0,
    announce_interval: Annotated[float, typer.Option(
        help="Seconds between a pending node's requests to join.")] = 5.0,
    status_file: Annotated[Path | None, typer.Option(
        help="Written on exit: each node's run and the events the broker confirmed.")] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING.")] = "WARNING",
) -> None:
    """Run COUNT simulated nodes in this process until SIGTERM or SIGINT."""
    configure_logging(log_level, "text")
    spec = FleetSpec(
        engine_url=engine_url, data_dir=data_dir, count=count, first=first, seed=seed, bus=bus,
        engine_ca_file=engine_ca_file, vms_per_node=vms_per_node, vm_memory_mib=vm_memory,
        timings=AgentTimings(stats_interval_s=stats_interval,
                             heartbeat_interval_s=heartbeat_interval),
        simulated=SimulatedTimings(start_s=start_delay), announce_interval_s=announce_interval)

    async def run() -> None:
        fleet = SimulatedFleet(spec)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        starting = asyncio.create_task(fleet.start())
        try:
            await stop.wait()
        finally:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            await fleet.stop()
            if status_file is not None:
                fleet.write_status(status_file)

    asyncio.run(run())
