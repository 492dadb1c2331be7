"""`overt pki`: the engine's certificates, on the engine's machine (it reads the data dir)."""

from __future__ import annotations

import asyncio

import typer

from overt.cli.engine import DataDir, build_settings
from overt.cli.errors import reports_errors
from overt.cli.output import as_json, console, table
from overt.engine.composition import EngineRuntime
from overt.engine.pki.recovery import recover
from overt.engine.pki.rotation import certificate_states, hosts_on_legacy_ca
from overt.pki.expiry import Expiry

app = typer.Typer(help="The engine's CA and certificates.", no_args_is_help=True)


@app.command("status")
@reports_errors
def status(data_dir: DataDir = None,
           json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every certificate (CA, engine, each host) with its expiry; exit 1 if one expired."""
    runtime = EngineRuntime(build_settings(data_dir, None, None, None, None, None))

    async def read() -> tuple[list[tuple[str, str, int, str]], list[str]]:
        try:
            states = await certificate_states(runtime.db, runtime.pki)
            legacy = await hosts_on_legacy_ca(runtime.db, runtime.pki)
        finally:
            await runtime.db.dispose()
        now = runtime.pki.clock.now()
        return [(s.what, s.not_after.isoformat(), s.days_left(now), s.expiry.value)
                for s in states], legacy

    rows, legacy = asyncio.run(read())
    accepted = runtime.pki.legacy_ca() is not None
    if json:
        as_json({"ca_fingerprint": runtime.pki.ca_fingerprint(),
                 "rotation": runtime.settings.cert_rotation,
                 "pre_split_ca_accepted_for_nodes": accepted,
                 "hosts_on_pre_split_ca": legacy,
                 "certificates": [{"what": w, "not_after": n, "days_left": d, "state": s}
                                  for w, n, d, s in rows]})
    else:
        console.print(f"CA fingerprint: {runtime.pki.ca_fingerprint()} (nodes: "
                      "--engine-ca-fingerprint)", highlight=False, soft_wrap=True)
        console.print(f"rotation: {'on' if runtime.settings.cert_rotation else 'OFF'}",
                      highlight=False)
        table("Certificates", ["certificate", "valid until", "days left", "state"], rows)
        if legacy:
            how = ("accepted until they move to the node CA by themselves" if accepted
                   else "REFUSED: enroll them again")
            console.print(f"hosts still on the pre-split engine CA ({how}): "
                          f"{', '.join(legacy)}", highlight=False, soft_wrap=True)
        elif accepted:
            console.print("pre-split engine CA: still accepted for nodes until the engine's "
                          "next certificate check", highlight=False, soft_wrap=True)
    if any(state == Expiry.EXPIRED.value for *_, state in rows):
        raise typer.Exit(1)


@app.command("recover")
@reports_errors
def recover_command(data_dir: DataDir = None) -> None:
    """Renew every expired or due certificate (CA, engine, hosts); hosts come back by
    themselves within a check of the engine and of each node."""
    runtime = EngineRuntime(build_settings(data_dir, None, None, None, None, None))

    async def run() -> list[str]:
        try:
            return (await recover(runtime.db, runtime.pki)).renewed
        finally:
            await runtime.db.dispose()

    renewed = asyncio.run(run())
    if renewed:
        console.print(f"renewed: {', '.join(renewed)}", highlight=False, soft_wrap=True)
    else:
        console.print("nothing to renew: every certificate is valid", highlight=False)
