"""`overt engine`: run the engine, all parts in one process or one part per process."""

from __future__ import annotations

import asyncio
import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from overt.cli.errors import reports_errors
from overt.config import EngineSettings, SettingsError
from overt.engine.composition import EngineRuntime, Parts, settle_heap
from overt.logs import configure_logging


class Part(StrEnum):
    API = "api"
    WORKER = "worker"
    MONITOR = "monitor"
    NETSVC = "netsvc"


def build_settings(data_dir: Path | None, db: str | None, bus: str | None, address: str | None,
                   port: int | None, public_address: str | None,
                   broker_admin_file: Path | None = None,
                   broker_node_url: str | None = None,
                   netsvc_file: Path | None = None) -> EngineSettings:
    overrides = {k: v for k, v in {
        "data_dir": data_dir, "db": db, "bus": bus, "api_address": address, "api_port": port,
        "public_address": public_address, "broker_admin_file": broker_admin_file,
        "broker_node_url": broker_node_url, "netsvc_file": netsvc_file}.items() if v is not None}
    try:
        return EngineSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"invalid settings: {problems}") from None


DataDir = Annotated[Path | None, typer.Option(help="Data directory (default /var/lib/overt/engine).")]
Db = Annotated[str | None, typer.Option(
    help="Database URL (sqlite:///... or postgresql+psycopg://...); one with a password is "
    "better given as OVERT_DB, which `ps` does not show.")]
Bus = Annotated[str | None, typer.Option(
    help="`direct`, or the amqp(s):// URL of the engine's broker account (fully managed mode; "
    "better given as OVERT_BUS, which `ps` does not show).")]
BrokerAdminFile = Annotated[Path | None, typer.Option(
    help="File (0600) holding the broker administrator's URL; the api process needs it in "
    "fully managed mode to give nodes their accounts.")]
BrokerNodeUrl = Annotated[str | None, typer.Option(
    help="amqp(s)://HOST:PORT where nodes reach the broker, when it differs.")]
Address = Annotated[str | None, typer.Option(help="Address the API listens on.")]
Port = Annotated[int | None, typer.Option(help="Port of the API (HTTPS).")]
Public = Annotated[str | None, typer.Option(help="Address nodes use to reach the engine.")]
NetsvcFile = Annotated[Path | None, typer.Option(
    help="Address plan of the managed networks (TOML, docs/networks.md): the engine serves "
    "DHCP and DNS (dnsmasq) and NTP (chrony) on them.")]


@reports_errors
def engine(
    part: Annotated[Part | None, typer.Argument(help="Run only this part (several processes "
                                                     "share one PostgreSQL).")] = None,
    data_dir: DataDir = None, db: Db = None, bus: Bus = None, address: Address = None,
    port: Port = None, public_address: Public = None,
    broker_admin_file: BrokerAdminFile = None, broker_node_url: BrokerNodeUrl = None,
    netsvc_file: NetsvcFile = None,
) -> None:
    """Run the engine: the API, the job worker, the monitor and, with an address plan, the
    network services (or just one of them)."""
    settings = build_settings(data_dir, db, bus, address, port, public_address,
                              broker_admin_file, broker_node_url, netsvc_file)
    if part is Part.NETSVC and settings.netsvc_file is None:
        raise SettingsError("`overt engine netsvc` needs the address plan: give --netsvc-file "
                            "FILE or OVERT_NETSVC_FILE (see docs/networks.md)")
    if part is not None and settings.database_url().startswith("sqlite"):
        raise SettingsError(f"`overt engine {part.value}` shares the database with the other "
                            "parts, which needs PostgreSQL: give --db "
                            "postgresql+psycopg://USER:PASSWORD@HOST/DB (SQLite serves one "
                            "`overt engine` running every part)")
    configure_logging(settings.log_level, settings.log_format)
    parts = Parts.only(part.value) if part else Parts()
    runtime = EngineRuntime(settings, parts=parts)

    async def main() -> None:
        await runtime.prepare()
        if runtime.generated_password:
            typer.echo(f"admin@internal password (also in {runtime.password_file}): "
                       f"{runtime.generated_password}")
        ready = asyncio.Event()

        async def settle() -> None:
            await ready.wait()
            settle_heap()

        settling = asyncio.create_task(settle())
        try:
            await runtime.run(ready=ready)
        finally:
            settling.cancel()

    asyncio.run(main())
    logging.shutdown()
