"""The all-in-one (`overt demo`): an engine and an agent for this machine, ready to use.

The engine runs in this process; the agent runs as a child process so that VMs,
which belong to libvirt, outlive both (as with oVirt, stopping the engine never
stops a VM). On first start this machine is added as host `local` of cluster
Default, with a local storage domain and the `test-guest` template.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from overt.allinone_agent import AgentError, AgentOptions, LocalAgent
from overt.config import EngineSettings, is_broker_url
from overt.engine.composition import EngineRuntime
from overt.engine.db.seed import ADMIN
from overt.engine.db.tables import Cluster, Host, StorageDomain, Template, User
from overt.engine.model.host_actions import HostAction, host_action_allowed
from overt.engine.model.status import HostStatus, TemplateStatus
from overt.engine.services import hosts as host_service
from overt.engine.services.jobs import JobSubmitter
from overt.engine.services.templates import import_image_template
from overt.lab import netns
from overt.lab.guest import build_guest_image
from overt.lab.guest_dhcp import GuestDhcp
from overt.pki.certs import key_fingerprint, load_key
from overt.system.daemons import ensure_libvirtd
from overt.system.waiting import tcp_port_answers

log = logging.getLogger(__name__)

LOCAL_HOST = "local"
LOCAL_STORAGE = "local"
TEST_TEMPLATE = "test-guest"
IMAGES_DIR = Path("/var/lib/overt/images")
MANAGEMENT_BRIDGE = "ovirtmgmt"
DEMO_SUBNET = "10.76.0.0/24"


class DemoError(RuntimeError):
    """The all-in-one cannot start; the message says what to do."""


@dataclass
class DemoOptions:
    data_dir: Path
    port: int
    db: str | None
    bus: str
    node_port: int = 54321
    gateway_port: int = 8444
    public_address: str = "127.0.0.1"
    images_dir: Path = IMAGES_DIR
    netsvc_file: Path | None = None


class Stopped(Exception):
    """The engine stopped (SIGINT or SIGTERM) while the demo was still setting up."""


class AllInOne:
    def __init__(self, options: DemoOptions, say: Callable[[str], None]) -> None:
        self.options = options
        self.say = say
        if options.bus != "direct" and not is_broker_url(options.bus):
            raise DemoError(f"--bus {options.bus!r}: use `direct` or the amqp(s):// URL of a "
                            "broker administrator (see docs/broker.md)")
        # Every engine part runs in this one process, the one that enrolls nodes: in fully
        # managed mode it uses the administrator's URL for its own traffic too.
        admin = options.bus if self.managed else None
        settings = EngineSettings(
            data_dir=options.data_dir, db=options.db, bus=options.bus, api_address="127.0.0.1",
            api_port=options.port, gateway_address="0.0.0.0",  # noqa: S104 - lab nodes too
            gateway_port=options.gateway_port, public_address=options.public_address,
            broker_admin_url=admin, netsvc_file=options.netsvc_file)
        self.runtime = EngineRuntime(settings)
        self.agent = LocalAgent(AgentOptions(
            data_dir=options.data_dir, images_dir=options.images_dir, port=options.node_port,
            ca_file=self.runtime.pki.ca_file, managed=self.managed), say)

    @property
    def managed(self) -> bool:
        return self.options.bus != "direct"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.options.port}/ovirt-engine/api"

    @property
    def portal_url(self) -> str:
        return f"https://127.0.0.1:{self.options.port}/"

    def _check_ports(self) -> None:
        ports = [(self.options.port, "API"), (self.options.gateway_port, "node gateway")]
        if self.agent.leftover() is None:
            ports.append((self.options.node_port, "local agent"))
        for port, what in ports:
            if tcp_port_answers("127.0.0.1", port):
                raise DemoError(f"port {port} (the {what}) is in use: is another Overt running? "
                                "Stop it, or choose other ports.")

    @contextlib.asynccontextmanager
    async def _stage(self, what: str) -> AsyncIterator[None]:
        """Say what the demo does now, and how long it took, so a slow first run never
        looks hung."""
        self.say(f"{what}…")
        started = time.monotonic()
        yield
        self.say(f"{what}: done in {time.monotonic() - started:.1f} s")

    async def run(self, ready: Callable[[AllInOne], None]) -> None:
        """Set up and run until SIGINT or SIGTERM; whatever way out, the engine and the
        agent this run started are stopped."""
        self._check_ports()
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        assert main is not None
        # Until the engine takes these signals over (then it stops, and so does the demo).
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, main.cancel)
        async with self._stage("starting libvirtd"):
            await asyncio.to_thread(ensure_libvirtd)
        await asyncio.to_thread(self._ensure_management_bridge)
        async with self._stage("building the test guest's disk image (cached after the first "
                               "run)"):
            image = await asyncio.to_thread(build_guest_image)
        async with self._stage("preparing the engine (database, certificates)"):
            await self.runtime.prepare()
        started = asyncio.Event()
        engine = asyncio.create_task(self.runtime.run(ready=started))
        try:
            await self._unless_stopped(engine, started.wait())
            self.agent.start()
            await self._unless_stopped(engine, self.agent.wait_until_it_answers())
            await self._unless_stopped(engine, self._set_up(
                str(image.qcow2_disk), image.qcow2_disk.stat().st_size))
            ready(self)
            await engine
        except AgentError as exc:
            raise DemoError(str(exc)) from None
        finally:
            try:
                self.runtime.stop()
                await asyncio.gather(engine, return_exceptions=True)
            finally:
                await asyncio.to_thread(self.agent.stop)

    @staticmethod
    async def _unless_stopped(engine: asyncio.Task[None], step: Awaitable[object]) -> None:
        """Run a set-up step; if the engine stops meanwhile (a signal), give up the step."""
        task = asyncio.ensure_future(step)
        try:
            await asyncio.wait([task, engine], return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            if engine.done() and not engine.cancelled() and engine.exception() is not None:
                raise DemoError(f"the engine stopped: {engine.exception()}")
            raise Stopped()
        task.result()

    def _ensure_management_bridge(self) -> None:
        """This machine's `ovirtmgmt` bridge, as oVirt's host deploy makes one.

        The all-in-one cannot move the machine's own address onto a bridge, so the
        bridge is a network of its own for the VMs, with DHCP, reachable from here.
        A bridge of that name without the demo's address is the machine's own (a host
        deploy's) and is left alone; the demo's own bridge outlives its DHCP server (the
        server's process can die, its state directory be wiped), so that server is started
        again whenever it is not running.
        """
        subnet = ipaddress.IPv4Network(DEMO_SUBNET)
        gateway = ipaddress.IPv4Interface(f"{subnet.network_address + 1}/{subnet.prefixlen}")
        if netns.link_exists(MANAGEMENT_BRIDGE):
            if not netns.has_address(MANAGEMENT_BRIDGE, gateway):
                return
        else:
            clashes = netns.routes_overlapping(subnet, ignore_devs={MANAGEMENT_BRIDGE})
            if clashes:
                raise DemoError(f"the demo's VM network {subnet} overlaps this machine's "
                                f"routes ({'; '.join(clashes)})")
            self.say(f"creating bridge {MANAGEMENT_BRIDGE} ({subnet}, with DHCP) for the VMs")
            netns.ensure_bridge(MANAGEMENT_BRIDGE)
            netns.ensure_address(MANAGEMENT_BRIDGE, gateway)
        state = Path("/var/lib/overt/demo-network")
        state.mkdir(parents=True, exist_ok=True)
        dhcp = GuestDhcp(state, MANAGEMENT_BRIDGE,
                         (subnet.network_address + 100, subnet.network_address + 250))
        if not dhcp.running():
            self.say(f"starting DHCP on bridge {MANAGEMENT_BRIDGE} for the VMs")
            dhcp.ensure_running()

    async def _set_up(self, image_path: str, image_size: int) -> None:
        db = self.runtime.db
        async with self._stage("bringing up this machine as host 'local'"):
            host_id = await self._ensure_local_host()
            await self._wait_for(lambda: self._host_status(host_id), {HostStatus.UP},
                                 "host 'local' to come up",
                                 failed={HostStatus.INSTALL_FAILED},
                                 limit_s=self.runtime.settings.host_install_timeout_s + 60)
        jobs = JobSubmitter(self.runtime.job_wakeup)
        async with db.transaction() as session:
            admin = (await session.execute(select(User).where(User.user_name == ADMIN))
                     ).scalar_one()
        async with db.transaction() as session:
            domain = (await session.execute(select(StorageDomain).where(
                StorageDomain.name == LOCAL_STORAGE))).scalar_one_or_none()
            if domain is None:
                host = await session.get(Host, host_id)
                assert host is not None
                cluster = await session.get(Cluster, host.cluster_id)
                assert cluster is not None
                domain = StorageDomain(name=LOCAL_STORAGE, description="Local storage of host local",
                                       storage_type="localfs", path=str(self.options.images_dir),
                                       host_id=host_id, data_center_id=cluster.data_center_id,
                                       status="active")
                session.add(domain)
                await session.flush()
            template = (await session.execute(select(Template).where(
                Template.name == TEST_TEMPLATE))).scalar_one_or_none()
            if template is None:
                self.say("importing the test guest as template 'test-guest'")
                template = await import_image_template(
                    session, jobs, name=TEST_TEMPLATE, image_path=image_path,
                    size_bytes=64 << 20, storage_domain=domain, user=admin, memory_mib=256,
                    description="Overt's test guest: a tiny Linux that boots in seconds")
            template_id = template.id
        await self._wait_for(lambda: self._template_status(template_id),
                             {TemplateStatus.OK}, "template 'test-guest'",
                             failed={TemplateStatus.ILLEGAL, "gone"})

    async def _ensure_local_host(self) -> uuid.UUID:
        """Host `local`, added if missing, and repaired from whatever state a previous run
        left it in (a failed install, maintenance, a changed agent port)."""
        jobs = JobSubmitter(self.runtime.job_wakeup)
        async with self.runtime.db.transaction() as session:
            admin = (await session.execute(select(User).where(User.user_name == ADMIN))
                     ).scalar_one()
            host = (await session.execute(select(Host).where(Host.name == LOCAL_HOST))
                    ).scalar_one_or_none()
            if host is None:
                self.say("adding this machine as host 'local' of cluster Default")
                host, _token = await host_service.add_host(
                    session, jobs, name=LOCAL_HOST, address="127.0.0.1",
                    port=self.options.node_port, cluster=None, user=admin,
                    fingerprint=await self._local_node_key())
                return host.id
            status = host.status
            installable = host_action_allowed(HostAction.INSTALL, status)
            if status is HostStatus.PENDING_APPROVAL:
                self.say("host 'local' waits for approval: approving it")
                await host_service.approve_host(session, host.id, admin)
            elif status is HostStatus.MAINTENANCE and host.port == self.options.node_port:
                self.say("host 'local' is in maintenance: activating it")
                await host_service.activate_host(session, host.id, admin, jobs)
                self.runtime.monitor_wakeup.set()
            elif installable or host.port != self.options.node_port:
                if not installable:
                    await host_service.deactivate_host(session, jobs, host.id, admin)
                host.port = self.options.node_port
                self.say(f"host 'local' is {status}: installing it again")
                await host_service.install_host(session, jobs, host.id, admin)
            return host.id

    async def _local_node_key(self) -> str:
        """This machine's node key fingerprint, read from its data directory: the demo
        confirms its own node's key as an administrator would read it from the node."""
        key_file = self.options.data_dir / "node" / "node.key"
        for _ in range(300):  # the agent makes its key as it starts
            if key_file.exists():
                return key_fingerprint(load_key(key_file).public_key())
            await asyncio.sleep(0.2)
        raise DemoError(f"the agent made no key in 60 s; see {self.options.data_dir}/node.log")

    async def _host_status(self, host_id: object) -> str:
        async with self.runtime.db.transaction() as session:
            host = await session.get(Host, host_id)
            return host.status if host else "gone"

    async def _template_status(self, template_id: object) -> str:
        async with self.runtime.db.transaction() as session:
            template = await session.get(Template, template_id)
            return template.status if template else "gone"

    async def _wait_for(self, status: Callable[[], Awaitable[str]], wanted: set[str], what: str,
                        *, failed: set[str], limit_s: float = 240) -> None:
        async with asyncio.timeout(limit_s):
            while True:
                current = await status()
                if current in wanted:
                    return
                if current in failed:
                    raise DemoError(f"{what} failed ({current}); see the engine's events and "
                                    f"{self.agent.log_file}. Running the demo again installs "
                                    "it again.")
                if not self.agent.running():
                    raise DemoError(f"the agent stopped; see {self.agent.log_file}")
                await asyncio.sleep(0.3)
