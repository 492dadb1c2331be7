"""The fast lane's engine: the real services, worker and monitor in this process, with
simulated nodes (real agents on `SimulatedHypervisor`) over the loopback transport.

A start, stop or suspend goes through exactly the code a deployment runs (service,
job queue, handler, NodeClient, agent, event sequencing, monitor) in milliseconds,
as Ganeti's tests do with its fake hypervisor. Only libvirt, the network and the
database server are left out (SQLite).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.bus.loopback import LoopbackBus
from overt.config import EngineSettings
from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import Cluster, Host, Job, StorageDomain, User, Vm
from overt.engine.jobs.context import JobServices
from overt.engine.jobs.handlers import UNITS
from overt.engine.jobs.observe import ObservedChanges
from overt.engine.jobs.worker import Worker
from overt.engine.model.status import HostStatus, StorageDomainStatus, StorageType, VmStatus
from overt.engine.monitor.service import Monitor
from overt.engine.nodes import NodeClient
from overt.engine.services.jobs import JobSubmitter
from overt.node.agent import Agent, AgentTimings
from overt.node.idempotency import IdempotencyStore
from overt.node.simulated.hypervisor import SimulatedHypervisor
from overt.node.simulated.networks import SimulatedHostNetworks
from overt.node.simulated.san import SimulatedSan
from overt.node.storage.local import LocalVolumes
from overt.protocol.host import KdumpStatus, NicInfo

T = TypeVar("T")
POLL_S = 0.03  # how often a test looks at the database for what it waits for
# The monitor's heartbeat and resync loops and the idle worker's polling: events and job
# submissions wake them at once, so they only need to be quick, not busy.
TICK_S = 0.1
# The monitor's heartbeat check: with a timeout of an hour no host falls silent unless a
# test backdates its heartbeat; the check every tick cost a transaction per 0.1 s of every
# engine test (a third of an idle engine's CPU). Tests that backdate heartbeats check every
# tick, as the engine does (the `heartbeat_check_s` fixture): a host judged connecting, then
# non responsive, took two checks, 1-2 s of waiting in each of those tests.
HEARTBEAT_CHECK_S = 1.0
WITHIN_S = 10.0  # what the lane waits for anything before failing the test


@dataclass
class SimulatedNode:
    host_id: uuid.UUID
    host_uuid: uuid.UUID
    name: str
    hypervisor: SimulatedHypervisor
    agent: Agent
    networks: SimulatedHostNetworks


class LoopbackEngine:
    """One engine (worker and monitor) and its simulated nodes, on the database `db`."""

    def __init__(self, db: Database, directory: Path, *,
                 heartbeat_check_s: float | None = HEARTBEAT_CHECK_S) -> None:
        self.db = db
        self.directory = directory
        self.bus = LoopbackBus()
        self.nodes = NodeClient(self.bus.engine())
        changes = ObservedChanges()
        self.monitor = Monitor(db, self.nodes, heartbeat_timeout_s=3600, read_inbox=False,
                               tick_s=TICK_S, heartbeat_check_s=heartbeat_check_s,
                               report_interval_s=3600, changes=changes,
                               storage_probe_interval_s=3600)  # tests probe when they mean to
        self.wakeup = asyncio.Event()
        self.jobs = JobSubmitter(self.wakeup)
        # Simulated nodes reach each other for a migration by the URI "simulated://NAME".
        self.peers: dict[str, SimulatedHypervisor] = {}
        # The iSCSI portals every simulated node reaches (empty unless a test adds some).
        self.san = SimulatedSan()
        self.settings = settings = EngineSettings(
            data_dir=directory / "engine", migration_destination_uri="simulated://{name}",
            migration_stream_uri="", migration_progress_interval_s=0.02,
            # No listener runs here unless a test starts one: a short wait before a fence.
            kdump_started_timeout_s=0.3, kdump_finished_timeout_s=1.5)
        self.worker = Worker(db, JobServices(nodes=self.nodes, settings=settings,
                                             changes=changes, jobs=self.jobs,
                                             resync_soon=self.monitor.resync_soon),
                             UNITS, poll_interval=TICK_S,
                             wakeup=self.wakeup)
        self.hosts: dict[str, SimulatedNode] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.user_id = uuid.uuid4()
        self.cluster_id = uuid.UUID(int=0)

    async def start(self) -> None:
        async with self.db.transaction() as session:
            session.add(User(id=self.user_id, user_name=f"admin-{self.user_id.hex[:6]}@internal",
                             administrator=True))
            cluster = (await session.execute(select(Cluster).order_by(Cluster.created_at)
                                              )).scalars().first()
            assert cluster is not None, "the database is not seeded"
            self.cluster_id = cluster.id
        await self.nodes.transport.start(self.monitor.apply)
        self._tasks = [asyncio.create_task(self.monitor.run(), name="monitor"),
                       asyncio.create_task(self.worker.run(), name="worker")]

    async def stop(self) -> None:
        """Stop the worker, then the monitor while no transaction runs (a SQLite query
        cancelled half-way can leave its connection unable to close), then the agents."""
        monitor, worker = self._tasks
        await self.worker.stop()  # it stops claiming and leaves its loop by itself
        await asyncio.wait_for(worker, WITHIN_S)
        async with self.db.transaction():  # SQLite: every other transaction waits
            monitor.cancel()
            await asyncio.gather(monitor, return_exceptions=True)
            await self.monitor.close()
        for node in self.hosts.values():
            await node.agent.stop()
        await self.nodes.transport.close()

    # -- the fleet ---------------------------------------------------------------------

    async def add_host(self, name: str, *, memory_mib: int = 4096,
                       nics: tuple[NicInfo, ...] = (),
                       kdump_status: KdumpStatus = KdumpStatus.DISABLED) -> SimulatedNode:
        """A host as enrollment leaves it (connecting, with the capabilities its node
        reports: its NICs and kdump status), whose agent then starts and reports; returns
        once the monitor has it up with its full state applied."""
        host_uuid, host_id = uuid.uuid4(), uuid.uuid4()
        home = self.directory / name
        async with self.db.transaction() as session:
            session.add(Host(id=host_id, name=name, address="127.0.0.1",
                             cluster_id=self.cluster_id, status=HostStatus.CONNECTING.value,
                             host_uuid=host_uuid, memory_mib=memory_mib,
                             capabilities={"nics": [n.model_dump(mode="json") for n in nics]},
                             kdump_status=kdump_status))
            await session.flush()
            session.add(StorageDomain(name=f"{name}-local", storage_type=StorageType.LOCALFS.value,
                                      path=str(home / "images"), host_id=host_id,
                                      status=StorageDomainStatus.ACTIVE.value))
        hypervisor = SimulatedHypervisor(host_uuid, hostname=name, memory_mib=memory_mib, cpus=4,
                                         peers=self.peers, nics=nics,
                                         kdump_status=kdump_status)
        self.peers[f"simulated://{name}"] = hypervisor
        home.mkdir(parents=True, exist_ok=True)
        networks = SimulatedHostNetworks()
        agent = self._agent(hypervisor, host_uuid, home, networks)
        await agent.start()
        node = self.hosts[name] = SimulatedNode(host_id, host_uuid, name, hypervisor, agent,
                                                networks)
        await self.settled()
        return node

    async def restart_agent(self, name: str) -> None:
        """The node's agent stops (events it had not delivered are lost) and a new run of
        it starts on the same hypervisor, whose VMs kept running."""
        node = self.hosts[name]
        await node.agent.stop()
        node.agent = self._agent(node.hypervisor, node.host_uuid, self.directory / name,
                                 node.networks)
        await node.agent.start()

    def _agent(self, hypervisor: SimulatedHypervisor, host_uuid: uuid.UUID, home: Path,
               networks: SimulatedHostNetworks) -> Agent:
        return Agent(hypervisor=hypervisor, volumes=LocalVolumes(home / "images"),
                     idempotency=IdempotencyStore(home / "command-results.sqlite"),
                     transport=self.bus.agent(host_uuid),
                     timings=AgentTimings(stats_interval_s=3600, heartbeat_interval_s=3600,
                                          bond_watch_interval_s=0.2),
                     networks=networks, iscsi=self.san)

    async def settled(self) -> None:
        """Wait until every host is up with no resync pending and no job is running."""
        async def quiet() -> bool:
            async with self.db.transaction() as session:
                hosts = (await session.execute(select(Host.status, Host.needs_resync)
                                               )).all()
                busy = (await session.execute(select(Job.id).where(
                    Job.state.in_(["queued", "running"])))).first()
            return busy is None and all(status == HostStatus.UP.value and not resync
                                        for status, resync in hosts)
        await self.eventually(quiet, what="the engine to settle")

    # -- objects and actions -----------------------------------------------------------

    async def add_vm(self, name: str, *, memory_mib: int = 256) -> uuid.UUID:
        vm_id = uuid.uuid4()
        async with self.db.transaction() as session:
            session.add(Vm(id=vm_id, name=name, cluster_id=self.cluster_id,
                           template_id=BLANK_TEMPLATE_ID, memory_mib=memory_mib,
                           status=VmStatus.DOWN.value))
        return vm_id

    async def act(self, action: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Call a service action (`start_vm`, ...) as the API does: in one transaction, with
        the job submitter and the user."""
        async with self.db.transaction() as session:
            user = await session.get(User, self.user_id)
            return await action(session, self.jobs, *args, user, **kwargs)

    async def job(self, job_id: uuid.UUID) -> Job:
        """Wait until the job has ended; return it."""
        async def ended() -> Job | None:
            async with self.db.transaction() as session:
                job = await session.get(Job, job_id)
            return job if job is not None and job.state in ("done", "failed") else None
        return await self.eventually(ended, what=f"job {job_id} to end")

    async def successor_ends(self, job_id: uuid.UUID, go_on: asyncio.Event | None = None
                             ) -> Job:
        """The job's engine died mid-way (the caller stopped `self.worker` and let the job's
        lease lapse): a successor worker takes the job over, `go_on` is set once it runs,
        and the job is returned once it has ended."""
        successor = Worker(self.db, self.worker.services, UNITS, poll_interval=0.05)
        running = asyncio.create_task(successor.run())
        try:
            if go_on is not None:
                go_on.set()
            return await self.job(job_id)
        finally:
            await successor.stop()
            await running

    async def vm(self, vm_id: uuid.UUID) -> Vm:
        async with self.db.transaction() as session:
            vm = await session.get(Vm, vm_id)
        assert vm is not None
        return vm

    async def vm_reaches(self, vm_id: uuid.UUID, statuses: Collection[VmStatus]) -> Vm:
        wanted = {s.value for s in statuses}

        async def reached() -> Vm | None:
            vm = await self.vm(vm_id)
            return vm if vm.status in wanted else None
        return await self.eventually(reached, what=f"VM {vm_id} to be {sorted(wanted)}")

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.db.transaction() as session:
            yield session

    @staticmethod
    async def eventually(check: Callable[[], Awaitable[T | bool | None]], *,
                         within: float = WITHIN_S, what: str = "the condition") -> Any:
        """Poll `check` until it gives something true; fail after `within` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            result = await check()
            if result:
                return result
            if loop.time() > deadline:
                raise AssertionError(f"timed out after {within:g} s waiting for {what}")
            await asyncio.sleep(POLL_S)
