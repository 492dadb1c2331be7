"""`overt snmp`: a node's snmpd configuration (SNMPv3 authPriv, or a v2c community).

Secrets come from files or the environment, never the command line; the file written is
mode 0600 and nothing secret is printed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from overt.cli.output import console
from overt.node.snmp.snmpd_conf import (
    AUTH_ENV,
    PRIV_ENV,
    SnmpConfigError,
    load_usm_user,
    render_snmpd_conf,
    write_snmpd_conf,
)
from overt.node.snmp.traps import TrapError, load_community

app = typer.Typer(help="SNMP on a node: snmpd's configuration.", no_args_is_help=True)


@app.command("snmpd-conf")
def snmpd_conf(
    out: Annotated[Path, typer.Option(help="The snmpd.conf to write (mode 0600).")],
    state_file: Annotated[Path, typer.Option(
        help="The agent's SNMP state file (its --snmp-state-file).")]
    = Path("/var/lib/overt/node/snmp-state.json"),
    listen: Annotated[str, typer.Option(help="snmpd's agentAddress.")] = "udp:0.0.0.0:161",
    v3_user: Annotated[str | None, typer.Option(
        help="An SNMPv3 user at authPriv (SHA, AES); v2c is then off.")] = None,
    v3_auth_file: Annotated[Path | None, typer.Option(
        help=f"File whose first line is the authentication passphrase (else {AUTH_ENV}).")]
    = None,
    v3_priv_file: Annotated[Path | None, typer.Option(
        help=f"File whose first line is the privacy passphrase (else {PRIV_ENV}).")] = None,
    community_file: Annotated[Path | None, typer.Option(
        help="Without --v3-user: file whose first line is the v2c community (else "
        "OVERT_SNMP_COMMUNITY).")] = None,
    source: Annotated[str, typer.Option(help="Who may read with the v2c community.")]
    = "default",
) -> None:
    """Write snmpd.conf for this node: the Overt subtree served by the agent's exporter,
    readable by the SNMPv3 user only (v2c off) or, without one, by the v2c community."""
    try:
        if v3_user is not None:
            text = render_snmpd_conf(state_file=state_file, agent_address=listen,
                                     user=load_usm_user(v3_user, v3_auth_file, v3_priv_file))
        else:
            text = render_snmpd_conf(state_file=state_file, agent_address=listen,
                                     community=load_community(community_file), source=source)
        write_snmpd_conf(out, text)
    except (SnmpConfigError, TrapError) as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    version = f"SNMPv3 user {v3_user} (authPriv), v2c off" if v3_user else "SNMPv2c"
    console.print(f"wrote {out} ({version}); restart snmpd to apply it", highlight=False)
