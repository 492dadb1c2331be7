"""`overt node`: run the agent of a managed node (the daemon)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import libvirt
import typer
from pydantic import ValidationError

from overt.cli.errors import stderr
from overt.config import NodeSettings
from overt.logs import configure_logging
from overt.node.composition import run_agent
from overt.node.snmp.traps import TrapError


def node(
    engine_url: Annotated[str | None, typer.Option(
        help="The engine's node gateway (https://ENGINE:8444); the node announces itself "
        "there until it is enrolled. Without it, the node looks the engine up by DNS (SRV "
        "_overt._tcp.DOMAIN).")] = None,
    discovery_domain: Annotated[str | None, typer.Option(
        help="Domain of the engine's SRV record (default: the resolver's search domains).")]
    = None,
    discovery_nameserver: Annotated[str | None, typer.Option(
        help="DNS server to ask for it (default: the system's).")] = None,
    bus: Annotated[str | None, typer.Option(
        help="`direct` (HTTPS + mutual TLS), or `amqp` for fully managed mode (through the "
        "broker, with the account the node gets at enrollment); amqp://HOST:PORT, without "
        "credentials, to reach the broker at another address.")] = None,
    listen_address: Annotated[str | None, typer.Option(help="Address of the RPC server.")] = None,
    port: Annotated[int | None, typer.Option(help="Port of the RPC server (54321).")] = None,
    imageio_port: Annotated[int | None, typer.Option(
        help="Port of the image data server (ovirt-imageio, 54322; 0: any free).")] = None,
    advertise_address: Annotated[str | None, typer.Option(
        help="Address the engine should use to reach this node.")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        help="Keys, certificates and agent state (/var/lib/overt/node).")] = None,
    storage_dir: Annotated[Path | None, typer.Option(
        help="Local disk images (/var/lib/overt/images).")] = None,
    import_dir: Annotated[list[Path] | None, typer.Option(
        help="A directory whose images may be copied into the storage directory "
        "(repeatable; /var/cache/overt).")] = None,
    libvirt_uri: Annotated[str | None, typer.Option(
        help="libvirtd to manage (qemu:///system; a lab node's own socket URI).")] = None,
    engine_ca_file: Annotated[Path | None, typer.Option(
        help="The engine CA to trust (a copy of the engine's pki/ca.pem).")] = None,
    engine_ca_fingerprint: Annotated[str | None, typer.Option(
        help="Trust the engine CA with this SHA-256 fingerprint (`overt pki status` on the "
        "engine shows it).")] = None,
    enroll_token: Annotated[str | None, typer.Option(
        help="The one-time token `overt host add` printed (also OVERT_NODE_ENROLL_TOKEN). "
        "Without a CA file, fingerprint or token the node trusts no engine.")] = None,
    stats_interval: Annotated[float | None, typer.Option(
        help="Seconds between stats samples (15, at least 1).")] = None,
    heartbeat_interval: Annotated[float | None, typer.Option(
        help="Seconds between heartbeats (5).")] = None,
    virt_type: Annotated[str | None, typer.Option(
        help="auto (probe whether KVM boots guests), kvm or qemu.")] = None,
    snmp_trap_target: Annotated[str | None, typer.Option(
        help="HOST[:PORT] that gets an SNMP trap on each VM state change (v2c with the "
        "community from --snmp-community-file or OVERT_SNMP_COMMUNITY, or v3).")] = None,
    snmp_community_file: Annotated[Path | None, typer.Option(
        help="File whose first line is the SNMP trap community.")] = None,
    snmp_trap_v3_user: Annotated[str | None, typer.Option(
        help="Send the traps as this SNMPv3 user (authPriv, SHA/AES) instead of v2c.")] = None,
    snmp_trap_v3_auth_file: Annotated[Path | None, typer.Option(
        help="File whose first line is the v3 authentication passphrase (else "
        "OVERT_SNMP_V3_AUTH_PASSPHRASE).")] = None,
    snmp_trap_v3_priv_file: Annotated[Path | None, typer.Option(
        help="File whose first line is the v3 privacy passphrase (else "
        "OVERT_SNMP_V3_PRIV_PASSPHRASE).")] = None,
    snmp_trap_engine_id: Annotated[str | None, typer.Option(
        help="The node's SNMP engine id for v3 traps (0x + hex; default from the host "
        "name).")] = None,
    snmp_state_file: Annotated[Path | None, typer.Option(
        help="State file snmpd's exporter reads (DATA_DIR/snmp-state.json).")] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING.")] = None,
    log_format: Annotated[str | None, typer.Option(help="text or json.")] = None,
) -> None:
    """Run the Overt agent of this managed node until SIGTERM (its VMs keep running).

    Every option can also be set as OVERT_NODE_<NAME> (e.g. OVERT_NODE_ENGINE_URL).
    """
    given: dict[str, Any] = {
        "engine_url": engine_url, "bus": bus, "listen_address": listen_address, "port": port,
        "imageio_port": imageio_port,
        "advertise_address": advertise_address, "data_dir": data_dir,
        "storage_dir": storage_dir, "image_import_dirs": import_dir or None,
        "libvirt_uri": libvirt_uri,
        "engine_ca_file": engine_ca_file, "engine_ca_fingerprint": engine_ca_fingerprint,
        "enroll_token": enroll_token, "stats_interval_s": stats_interval,
        "heartbeat_interval_s": heartbeat_interval, "virt_type": virt_type,
        "log_level": log_level, "log_format": log_format,
        "discovery_domain": discovery_domain, "discovery_nameserver": discovery_nameserver,
        "snmp_trap_target": snmp_trap_target, "snmp_community_file": snmp_community_file,
        "snmp_state_file": snmp_state_file, "snmp_trap_v3_user": snmp_trap_v3_user,
        "snmp_trap_v3_auth_file": snmp_trap_v3_auth_file,
        "snmp_trap_v3_priv_file": snmp_trap_v3_priv_file,
        "snmp_trap_engine_id": snmp_trap_engine_id,
    }
    try:
        settings = NodeSettings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        stderr.print(f"[bold red]error:[/] invalid settings: {problems}", highlight=False)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(run_agent(settings))
    except (libvirt.libvirtError, OSError, TrapError) as exc:
        stderr.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
