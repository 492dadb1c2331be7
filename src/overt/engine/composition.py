"""The composition root: builds the engine's parts from settings and runs them.

Nothing else constructs adapters (database, transport, PKI, servers); tests swap a
part by passing it in.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import re
import secrets
import signal
import socket
import ssl
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn

from overt.bus.amqp.admin import BrokerAdmin
from overt.bus.amqp.engine import AmqpEngineTransport
from overt.bus.amqp.topology import event_partition
from overt.bus.amqp.url import broker_addresses
from overt.bus.base import EngineTransport
from overt.bus.direct.engine import DirectEngineTransport
from overt.bus.direct.gateway import NodeGateway
from overt.bus.direct.tls import TlsFiles
from overt.clock import Clock
from overt.config import EngineSettings, SettingsError
from overt.engine.api.app import ApiServices, build_api_app
from overt.engine.db import migrate, observed_news
from overt.engine.db.database import Database
from overt.engine.db.observed_news import Announcer
from overt.engine.db.seed import ensure_admin, seed
from overt.engine.enrollment.broker_accounts import BrokerAdminAccounts, NodeAccountSweeper
from overt.engine.enrollment.registry import BrokerAccounts, Registry
from overt.engine.enrollment.unenrolled_node import (
    DirectUnenrolledNodeClient,
    UnenrolledNodeClient,
)
from overt.engine.identity.directories import Directories
from overt.engine.identity.kerberos import KerberosAcceptor
from overt.engine.identity.password_policy import PasswordPolicy
from overt.engine.identity.profiles import load_profiles
from overt.engine.identity.signin import SignInPolicy
from overt.engine.imageio.daemon import DaemonFiles, ImageioDaemon
from overt.engine.jobs.context import JobServices
from overt.engine.jobs.handlers import UNITS
from overt.engine.jobs.observe import ObservedChanges
from overt.engine.jobs.worker import Worker
from overt.engine.model.fencing_policy import FencingPolicy
from overt.engine.monitor.inbox import InboxSink
from overt.engine.monitor.kdump_listener import KdumpListener
from overt.engine.monitor.partitions import PartitionKeeper
from overt.engine.monitor.service import Monitor
from overt.engine.netsvc.plan import load_plan
from overt.engine.netsvc.service import NetworkServices
from overt.engine.nodes import NodeClient
from overt.engine.notifier.service import Notifier
from overt.engine.pki.authority import EnginePki
from overt.engine.pki.broker_tls import BrokerTls
from overt.engine.pki.pins import CertificatePins
from overt.engine.pki.rotation import CertificateWatch
from overt.engine.provisioning.images import NodeImages
from overt.engine.secrets import SecretBox
from overt.engine.services.image_transfers import ImageTransfers
from overt.engine.services.jobs import JobSubmitter
from overt.engine.web.app import web_routes
from overt.engine.web.live import ChangeFeed
from overt.engine.web.session_watch import SessionWatch
from overt.pki.certs import fingerprint, load_cert
from overt.system.daemons import SYSTEM_RABBITMQ, RabbitNode, reload_rabbitmq_tls

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parts:
    """Which parts of the engine this process runs."""

    api: bool = True
    worker: bool = True
    monitor: bool = True
    netsvc: bool = True  # only where the settings name an address plan

    @classmethod
    def only(cls, name: str) -> Parts:
        return cls(api=name == "api", worker=name == "worker", monitor=name == "monitor",
                   netsvc=name == "netsvc")


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the engine stops all its parts together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def settle_heap() -> None:
    """Hide what startup allocated (modules, the schema, routes, settings: some 250,000
    objects) from the garbage collector, once an engine process has started serving.

    A full collection walks every object the collector tracks; a listing of a thousand
    hosts or VMs promotes enough objects to set one off every few requests, and walking
    the startup heap made it cost 100-250 ms on the request that met it: the p99 of
    `bench/api_list.py`. Frozen objects are never collected, so this is for the process's
    own entry (`overt engine`), not for engines that tests start and stop in their own
    process."""
    gc.collect()
    gc.freeze()


def public_address(settings: EngineSettings) -> str:
    if settings.public_address:
        return settings.public_address
    if settings.api_address not in ("0.0.0.0", "::"):  # noqa: S104
        return settings.api_address
    return socket.gethostname()


@dataclass
class EngineRuntime:
    settings: EngineSettings
    parts: Parts = field(default_factory=Parts)
    transport: EngineTransport | None = None
    unenrolled_nodes: UnenrolledNodeClient | None = None
    broker: BrokerAccounts | None = None

    def __post_init__(self) -> None:
        data = self.settings.data_dir
        self.db = Database(self.settings.database_url())
        # Every part of this process opens the engine's secrets with this one box, handed
        # to it (the API's services, the jobs' services, the monitor, image transfers).
        self.secrets = SecretBox(data)
        addresses = [a for a in {public_address(self.settings), self.settings.api_address}
                     if a not in ("0.0.0.0", "::")]  # noqa: S104
        self.clock = Clock(self.settings.clock_offset_s)
        self.pki = EnginePki(data / "pki", addresses=addresses, clock=self.clock,
                             broker=make_broker_tls(self.settings))
        self.job_wakeup = asyncio.Event()
        self.monitor_wakeup = asyncio.Event()
        self.generated_password: str | None = None
        self.gateway_url = (f"https://{public_address(self.settings)}:"
                            f"{self.settings.gateway_port}")
        self._stop = asyncio.Event()
        self._servers: list[Any] = []
        self._monitor: Monitor | None = None
        self.kdump_listener: KdumpListener | None = None  # with the monitor, when enabled
        self._change_feed: ChangeFeed | None = None
        self._directories: Directories | None = None
        self.netsvc: NetworkServices | None = None
        self._transfers: ImageTransfers | None = None
        # Checked now, so a bad address plan stops the engine before anything starts.
        self.netsvc_plan = load_plan(self.settings.netsvc_file,
                                     gateway_port=self.settings.gateway_port) \
            if self.parts.netsvc and self.settings.netsvc_file is not None else None

    @property
    def password_file(self) -> Path:
        return self.settings.data_dir / "admin-password"

    async def prepare(self) -> None:
        """Data directory, schema, default objects, admin user, certificates."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        await asyncio.to_thread(migrate.upgrade, self.settings.database_url())
        await seed(self.db)
        password = self.settings.admin_password.get_secret_value() \
            if self.settings.admin_password else None
        self.generated_password = await ensure_admin(self.db, password=password,
                                                     password_file=self.password_file)
        self.pki.ensure()
        if self.transport is None:
            self.transport = make_transport(self.settings, self.pki,
                                            on_connected=self._bus_connected,
                                            assigned=self.parts.monitor)
        if self.broker is None and self.parts.api and self.settings.managed:
            self.broker = make_broker_accounts(self.settings, self.pki)
        if self.unenrolled_nodes is None:
            self.unenrolled_nodes = make_unenrolled_node_client(self.pki)

    def stop(self) -> None:
        self._stop.set()

    async def _bus_connected(self) -> None:
        """The broker connection is (back) up: what the nodes did meanwhile is resynced."""
        if self._monitor is not None:
            await self._monitor.resync_all()

    async def run(self, *, ready: asyncio.Event | None = None) -> None:
        assert self.transport is not None, "call prepare() first"
        nodes = NodeClient(self.transport)
        registry = Registry(self.db, self.pki, gateway_url=self.gateway_url, broker=self.broker,
                            rotation=self.settings.cert_rotation)
        changes = ObservedChanges()
        # On PostgreSQL the monitors' word reaches every process's jobs (LISTEN/NOTIFY).
        shared_news = not self.db.is_sqlite
        monitor = Monitor(self.db, nodes, heartbeat_timeout_s=self.settings.heartbeat_timeout_s,
                          read_inbox=self.settings.bus == "direct", wakeup=self.monitor_wakeup,
                          report_interval_s=self.settings.monitor_report_interval_s,
                          changes=changes,
                          announcer=Announcer(self.db) if shared_news else None,
                          fencing_defaults=FencingPolicy(
                              grace_s=self.settings.host_grace_s,
                              grace_per_vm_s=self.settings.host_grace_per_vm_s),
                          storage_probe_interval_s=self.settings.storage_probe_interval_s,
                          secrets=self.secrets)
        sink = monitor.apply if self.parts.monitor and self.settings.bus != "direct" else None
        await self.transport.start(sink)
        tasks: list[asyncio.Task[Any]] = []
        if self.parts.api:
            tasks += await self._start_api(registry, nodes)
        if self.parts.worker:
            worker = Worker(self.db, JobServices(nodes=nodes, settings=self.settings,
                                                 registry=registry, bootstrap=self.unenrolled_nodes,
                                                 changes=changes if self.parts.monitor
                                                 or shared_news else None,
                                                 jobs=JobSubmitter(self.job_wakeup),
                                                 resync_soon=monitor.resync_soon
                                                 if self.parts.monitor else lambda: None,
                                                 secrets=self.secrets),
                            UNITS, wakeup=self.job_wakeup)
            tasks.append(asyncio.create_task(worker.run(), name="worker"))
            if shared_news:
                tasks.append(asyncio.create_task(observed_news.listen(
                    self.db.url, changes.changed), name="observed news"))
        if self.parts.monitor:
            self._monitor = monitor
            tasks.append(asyncio.create_task(monitor.run(), name="monitor"))
            if isinstance(self.transport, AmqpEngineTransport):
                keeper = PartitionKeeper(self.db, self.transport)
                transport = self.transport
                # Resyncs and heartbeat judgements of the hosts whose events it applies.
                monitor.owns = lambda host: event_partition(host) in transport.partitions
                tasks.append(asyncio.create_task(keeper.run(), name="monitor partitions"))
            notifier = Notifier(self.db, SecretBox(self.settings.data_dir),
                                interval_s=self.settings.notifier_interval_s)
            tasks.append(asyncio.create_task(notifier.run(), name="notifier"))
            if self.settings.fence_kdump_listener:
                listener = KdumpListener(self.db, address=self.settings.fence_kdump_address
                                         or public_address(self.settings),
                                         port=self.settings.fence_kdump_port)
                self.kdump_listener = listener
                tasks.append(asyncio.create_task(listener.run(), name="fence_kdump listener"))
        if self.netsvc_plan is not None:
            self.netsvc = NetworkServices(
                self.db, self.netsvc_plan, self.settings.data_dir / "netsvc",
                node_images=self.node_images(),
                ca_fingerprint=fingerprint(load_cert(self.pki.ca_pem().encode())))
            tasks.append(asyncio.create_task(self.netsvc.run(), name="netsvc"))
        if self.parts.api and isinstance(self.broker, BrokerAdminAccounts):
            sweeper = NodeAccountSweeper(self.db, self.broker,
                                         interval_s=self.settings.broker_sweep_interval_s)
            tasks.append(asyncio.create_task(sweeper.run(), name="broker accounts"))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(RuntimeError, NotImplementedError):
                loop.add_signal_handler(sig, self.stop)
        if ready is not None:
            ready.set()
        log.info("engine running (%s)", ", ".join(
            p for p in ("api", "worker", "monitor", "netsvc") if getattr(self.parts, p)
            and (p != "netsvc" or self.netsvc_plan is not None)))
        stopper = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper and task.exception() is not None:
                log.error("engine part %s failed: %s", task.get_name(), task.exception())
        await self._shutdown(tasks)

    def _kerberos(self) -> KerberosAcceptor | None:
        keytab, profile = self.settings.kerberos_keytab, self.settings.kerberos_profile
        if keytab is None:
            return None
        if profile is None:
            raise SettingsError("kerberos_keytab needs kerberos_profile: the LDAP profile "
                                "whose users the Kerberos principals are")
        return KerberosAcceptor(keytab, profile)

    def node_images(self) -> NodeImages:
        """The node images provisioning profiles may name (`overt node-image build`)."""
        return NodeImages(self.settings.data_dir / "node-images")

    def _password_policy(self) -> PasswordPolicy:
        s = self.settings
        return PasswordPolicy(min_length=s.password_min_length,
                              min_classes=s.password_min_classes,
                              history=s.password_history, max_age_days=s.password_max_age_days)

    async def _start_api(self, registry: Registry, nodes: NodeClient | None = None
                         ) -> list[asyncio.Task[Any]]:
        self._directories = directories = Directories(
            load_profiles(self.settings.auth_profiles_file))
        services = ApiServices(jobs=JobSubmitter(self.job_wakeup), ca_certificate=self.pki.ca_file,
                               monitor_wakeup=self.monitor_wakeup.set,
                               node_images=self.node_images(),
                               directories=directories,
                               kerberos=self._kerberos(),
                               revoke_node_account=self.broker.delete_node_user
                               if self.broker is not None else None,
                               secrets=self.secrets,
                               metrics_token=self.settings.metrics_token(),
                               password_policy=self._password_policy(),
                               signin_policy=SignInPolicy(
                                   user_failures=self.settings.signin_failures,
                                   user_window_s=self.settings.signin_window_s,
                                   user_lockout_s=self.settings.lockout_s),
                               image_transfers=self._image_transfers(nodes))
        if services.image_transfers is not None:
            await services.image_transfers.recover(self.db, services.jobs)
        app = build_api_app(self.db, services, extra_routes=web_routes())
        app.state.change_feed = self._change_feed = ChangeFeed(self.db)
        app.state.session_watch = SessionWatch()
        config = uvicorn.Config(app, host=self.settings.api_address, port=self.settings.api_port,
                                ssl_certfile=str(self.pki.cert_file),
                                ssl_keyfile=str(self.pki.key_file), log_config=None,
                                access_log=False, lifespan="off", timeout_graceful_shutdown=5)
        server = _QuietServer(config)
        self._servers.append(server)
        tasks = [asyncio.create_task(server.serve(), name="api")]
        if services.image_transfers is not None:
            tasks.append(asyncio.create_task(
                services.image_transfers.watch(self.db, services.jobs), name="image-transfers"))
        gateway = make_gateway(self.settings, self.pki, registry,
                               InboxSink(self.db, self.monitor_wakeup))
        await gateway.start()
        self._servers.append(gateway)

        def reload() -> None:
            with self.pki.reading():  # not while another api process writes them
                gateway.reload_certificate()
                context = getattr(server.config, "ssl", None)
                if context is not None:
                    context.load_cert_chain(self.pki.cert_file, self.pki.key_file)
            if isinstance(self.transport, DirectEngineTransport):
                self.transport.reload_certificate()
        watch = CertificateWatch(self.db, self.pki, rotation=self.settings.cert_rotation,
                                 interval_s=self.settings.cert_check_interval_s, reload=reload)
        tasks.append(asyncio.create_task(watch.run(), name="certificates"))
        while not server.started:
            await asyncio.sleep(0.02)
            if tasks[0].done():
                tasks[0].result()  # re-raise why the API could not start (e.g. port in use)
        return tasks

    @property
    def image_transfers(self) -> ImageTransfers | None:
        """The transfers this process's API serves (None before the API starts)."""
        return self._transfers

    def _image_transfers(self, nodes: NodeClient | None = None) -> ImageTransfers:
        """The image data server of this API process (started at its first transfer), and
        the hosts' servers it proxies to."""
        home = self.settings.data_dir / "imageio"
        daemon = ImageioDaemon(DaemonFiles(home, cert_file=self.pki.cert_file,
                                           key_file=self.pki.key_file, ca_file=self.pki.ca_file),
                               address=self.settings.imageio_address,
                               port=self.settings.imageio_port)
        self._transfers = ImageTransfers(
            daemon, public_address(self.settings), home / "nbd",
            server_name=f"imageio@{public_address(self.settings)}:{self.settings.api_port}",
            nodes=nodes, pki=self.pki, secrets=self.secrets)
        return self._transfers

    async def _shutdown(self, tasks: list[asyncio.Task[Any]]) -> None:
        if self._transfers is not None:
            await self._transfers.close_all()
        for server in self._servers:
            if isinstance(server, uvicorn.Server):
                server.should_exit = True
            else:
                await server.stop()
        for task in tasks:
            if task.get_name() != "api":
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._change_feed is not None:
            await self._change_feed.close()
        if self.transport is not None:
            await self.transport.close()
        if isinstance(self.broker, BrokerAdminAccounts):
            await self.broker.aclose()
        if self._directories is not None:
            self._directories.close()
        await self.db.dispose()
        log.info("engine stopped")


def _tls(pki: EnginePki) -> TlsFiles:
    """The engine's identity towards nodes: its certificate (server CA), and the node CA
    as the only CA it trusts for peers (with the pre-split CA during an upgrade; each
    host's pin is checked on top)."""
    return TlsFiles(ca_file=pki.node_trust_file, cert_file=pki.cert_file, key_file=pki.key_file)


def make_broker_tls(settings: EngineSettings) -> BrokerTls | None:
    """The broker's certificate, when the engine manages it (`broker_tls_dir`)."""
    if settings.broker_tls_dir is None:
        return None
    names = settings.broker_tls_names or broker_names(settings)
    node = SYSTEM_RABBITMQ if settings.broker_rabbitmq_node is None else RabbitNode(
        name=settings.broker_rabbitmq_node.split("@")[0])
    return BrokerTls(settings.broker_tls_dir, tuple(names),
                     reload=lambda: reload_rabbitmq_tls(node))


def broker_names(settings: EngineSettings) -> list[str]:
    """Where nodes and engine processes reach the broker: its certificate names them all."""
    urls = [settings.bus if settings.managed else None, settings.broker_node_url]
    with contextlib.suppress(SettingsError):
        urls.append(settings.broker_admin())
    hosts: list[str | None] = [
        host for url in urls if url and url.startswith(("amqp://", "amqps://"))
        for host, _port in broker_addresses(url)]
    hosts += [urlsplit(url).hostname for url in urls
              if url and "://" in url and not url.startswith(("amqp://", "amqps://"))]
    return list(dict.fromkeys([*(h for h in hosts if h), "localhost", "127.0.0.1"]))


ConnectedHook = Callable[[], Coroutine[Any, Any, None]]


def make_transport(settings: EngineSettings, pki: EnginePki, *,
                   on_connected: ConnectedHook | None = None,
                   assigned: bool = False) -> EngineTransport:
    """The engine's end of the bus named by the settings (direct, or amqp://...); an
    `assigned` one consumes the event partitions its monitor's PartitionKeeper gives it."""
    if not settings.managed:
        return DirectEngineTransport(_tls(pki), clock=pki.clock)
    return AmqpEngineTransport(settings.bus, instance=engine_instance(),
                               ssl_context=broker_ssl_context(settings, pki),
                               on_connected=on_connected, assigned=assigned,
                               quorum_queues=settings.broker_quorum_queues)


def engine_instance() -> str:
    """A name no other engine process has (it names the process's reply queue)."""
    name = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)[-64:]


def broker_ssl_context(settings: EngineSettings, pki: EnginePki) -> ssl.SSLContext | None:
    """For amqps: trust the system's CAs, the engine CA (which may sign the broker's
    certificate) and the configured broker CA."""
    urls = [settings.bus, settings.broker_admin() or ""]
    if not any(url.startswith("amqps:") for url in urls):
        return None
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=pki.ca_file)
    if settings.broker_ca_file is not None:
        context.load_verify_locations(cafile=settings.broker_ca_file)
    return context


def make_broker_accounts(settings: EngineSettings, pki: EnginePki) -> BrokerAdminAccounts:
    """Nodes' broker accounts, made with the broker administrator's URL (api process)."""
    url = settings.broker_admin()
    if url is None:
        raise SettingsError(
            "in fully managed mode the api process enrolls nodes and needs the broker "
            "administrator's URL: set OVERT_BROKER_ADMIN_URL, or OVERT_BROKER_ADMIN_FILE to a "
            "file holding it (see docs/broker.md)")
    verify: ssl.SSLContext | bool = broker_ssl_context(settings, pki) or True
    return BrokerAdminAccounts(BrokerAdmin.for_broker(
        url, management_port=settings.broker_management_port,
        node_url=settings.broker_node_url, verify=verify,
        allow_plain=settings.broker_allow_plain,
        quorum_queues=settings.broker_quorum_queues))


def make_unenrolled_node_client(pki: EnginePki) -> UnenrolledNodeClient:
    return DirectUnenrolledNodeClient(DirectEngineTransport(_tls(pki)))


def make_gateway(settings: EngineSettings, pki: EnginePki, registry: Registry,
                 sink: InboxSink) -> NodeGateway:
    """The node gateway: enrollment always; events too in direct mode (into the inbox)."""
    return NodeGateway(_tls(pki), published_ca=pki.ca_file,
                       host=settings.gateway_address, port=settings.gateway_port,
                       sink=sink if settings.bus == "direct" else None, enroll=registry.announce,
                       pins=CertificatePins(registry.db, pki=pki).accepts, clock=pki.clock)

