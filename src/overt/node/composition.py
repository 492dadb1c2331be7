"""The node's composition root: settings in, a ready agent and its adapters out.

Nothing else constructs the hypervisor driver, the stores or the transport, so
tests and benchmarks swap one line here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from pathlib import Path

from overt.bus.base import AgentTransport
from overt.bus.direct.agent import AgentServerSettings, DirectAgentTransport
from overt.clock import Clock
from overt.config import NodeSettings
from overt.node import boot_args
from overt.node.agent import Agent, AgentTimings
from overt.node.discovery import discover_engine_url
from overt.node.hypervisor.libvirt_driver import LibvirtHypervisor
from overt.node.hypervisor.virt_mode_cache import VirtModeChoice, VirtType
from overt.node.idempotency import IdempotencyStore
from overt.node.identity import NodeIdentity
from overt.node.imageio import NodeImageio
from overt.node.leases.client import LeaseClient
from overt.node.leases.service import SOCKET_NAME, ensure_keeper, watch_keeper
from overt.node.managed import ManagedAgentTransport
from overt.node.networks import HostNetworks
from overt.node.snmp.reporter import SnmpReporter
from overt.node.snmp.traps import TrapSender, default_engine_id, load_community, load_v3
from overt.node.storage.local import LocalVolumes
from overt.snmp.trap import Credentials, V2c

log = logging.getLogger(__name__)


def engine_url(settings: NodeSettings, identity: NodeIdentity | None = None) -> str | None:
    """The configured engine URL, else (for a node not enrolled yet) the one its kernel
    command line gives (a node booted by provisioning), else the one DNS names (SRV
    `_overt._tcp`), else none."""
    if settings.engine_url is not None:
        return settings.engine_url
    if identity is not None and identity.gateway_url() is not None:
        return None  # enrolled: the engine told it where its gateway is
    booted = boot_args.read()
    if booted.engine_url is not None:
        log.info("engine %s from the kernel command line", booted.engine_url)
        return booted.engine_url
    found = discover_engine_url(
        [settings.discovery_domain] if settings.discovery_domain else [],
        [settings.discovery_nameserver] if settings.discovery_nameserver else [])
    if found is None:
        log.info("no engine URL given and none found by DNS (SRV _overt._tcp)")
    return found


def build_transport(settings: NodeSettings) -> AgentTransport:
    """Direct (HTTPS + mutual TLS), or fully managed (enrollment over HTTPS, then the broker)."""
    identity = NodeIdentity(settings.data_dir, settings.engine_ca_file,
                            ca_fingerprint=settings.engine_ca_fingerprint
                            or boot_args.read().ca_fingerprint,
                            enroll_token=settings.enroll_token,
                            clock=Clock(settings.clock_offset_s))
    server = AgentServerSettings(
        listen_address=settings.listen_address, port=settings.port,
        engine_url=engine_url(settings, identity), advertise_address=settings.advertise_address,
        announce_interval_s=settings.announce_interval_s,
        cert_check_interval_s=settings.cert_check_interval_s, hardware_root=Path("/"))
    if settings.managed:
        return ManagedAgentTransport(identity, server, broker=settings.bus)
    return DirectAgentTransport(identity, server)


def build_agent(settings: NodeSettings, transport: AgentTransport | None = None) -> Agent:
    """An agent wired from `settings`; not started."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    snmp = build_snmp(settings)  # before anything connects: a missing community stops here
    hypervisor = LibvirtHypervisor(settings.libvirt_uri, VirtModeChoice(
        VirtType(settings.virt_type), scratch_dir=settings.storage_dir / ".overt-probe",
        cache_file=settings.data_dir / "virt-mode.json"),
        max_outgoing_migrations=settings.max_outgoing_migrations)
    volumes = LocalVolumes(settings.storage_dir, tuple(settings.image_import_dirs))
    return Agent(
        hypervisor=hypervisor,
        volumes=volumes,
        idempotency=IdempotencyStore(settings.data_dir / "command-results.sqlite"),
        transport=transport or build_transport(settings),
        timings=AgentTimings(stats_interval_s=settings.stats_interval_s,
                             heartbeat_interval_s=settings.heartbeat_interval_s),
        networks=HostNetworks(settings.data_dir / "networks.json"),
        snmp=snmp,
        leases=LeaseClient(settings.data_dir / "leases" / SOCKET_NAME),
        imageio=NodeImageio(settings.data_dir / "imageio", settings.data_dir / "node.key",
                            volumes, address=settings.listen_address,
                            port=settings.imageio_port),
    )


def trap_credentials(settings: NodeSettings) -> Credentials:
    """SNMPv3 (authPriv) when a v3 user is set, else the v2c community; TrapError if the
    secrets cannot be had."""
    if settings.snmp_trap_v3_user is None:
        return V2c(load_community(settings.snmp_community_file))
    engine_id = settings.snmp_trap_engine_id or default_engine_id(socket.gethostname())
    credentials = load_v3(settings.snmp_trap_v3_user, settings.snmp_trap_v3_auth_file,
                          settings.snmp_trap_v3_priv_file, engine_id)
    log.info("SNMP traps: SNMPv3 user %s (authPriv, SHA/AES), engine id %s",
             credentials.user, credentials.engine_id)
    return credentials


def build_snmp(settings: NodeSettings) -> SnmpReporter | None:
    """The SNMP view if configured (a state file or a trap target); TrapError without a
    community for the traps."""
    if settings.snmp_state_file is None and settings.snmp_trap_target is None:
        return None
    sender = None
    if settings.snmp_trap_target is not None:
        sender = TrapSender(settings.snmp_trap_target, trap_credentials(settings))
    return SnmpReporter(settings.snmp_state_file or settings.data_dir / "snmp-state.json",
                        sender)


async def run_agent(settings: NodeSettings) -> None:
    """Run the agent until SIGTERM or SIGINT. Stopping it never stops a VM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if settings.test_start_delay_s:
        log.warning("delaying the start by %g s (test_start_delay_s, for tests only)",
                    settings.test_start_delay_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.test_start_delay_s)
        if stop.is_set():
            return
    agent = build_agent(settings)
    try:
        await agent.start()
        host_id = await agent.hypervisor.host_uuid()
        await ensure_keeper(settings.data_dir / "leases", settings.libvirt_uri, host_id)
        watchdog = asyncio.create_task(watch_keeper(settings.data_dir / "leases",
                                                    settings.libvirt_uri, host_id))
        await stop.wait()
        watchdog.cancel()
        log.info("stopping the agent (VMs keep running)")
    finally:
        with contextlib.suppress(Exception):
            await agent.stop()
