"""The agent: executes the engine's commands on the hypervisor and reports what happens.

It owns the event stream of its boot (a `host.state` report first, then lifecycle
events and heartbeats in order), the stats loop and command execution with
idempotency. It knows the hypervisor only through `Hypervisor`, the engine only
through `AgentTransport`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from overt.bus.base import AgentTransport
from overt.logs import current_job
from overt.node import memory_states
from overt.node.errors import NodeFailure
from overt.node.events import EventSequencer
from overt.node.hypervisor.base import Hypervisor, HypervisorReconnected, VmChanged
from overt.node.idempotency import IdempotencyStore
from overt.node.imageio import NodeImageio
from overt.node.leases.client import KeeperUnavailable, LeaseClient
from overt.node.networking import HostNetworking
from overt.node.snmp.reporter import SnmpReporter, row, vm_key
from overt.node.snmp.snapshot import VmRow
from overt.node.stats import Reading, StatsSampler
from overt.node.storage import chap, copies, iscsi_domain, iscsi_scan, reach, sealing
from overt.node.storage.local import LocalVolumes
from overt.node.storage.nfs_domain import NfsDomains
from overt.protocol import CommandEnvelope, ErrorCode, NodeError, Reply
from overt.protocol.commands import (
    Empty,
    HostCapabilitiesCommand,
    HostStateCommand,
    VmAbandonIncoming,
    VmBlockCommit,
    VmBlockCopy,
    VmBlockCopyStatus,
    VmCancelMigration,
    VmDefine,
    VmDestroy,
    VmDiskSnapshot,
    VmLeaseTakeOver,
    VmMemorySnapshot,
    VmMemoryStagingDrop,
    VmMigrate,
    VmMigrationProgress,
    VmPause,
    VmPrepareIncoming,
    VmReboot,
    VmResume,
    VmSave,
    VmSetTicket,
    VmShutdown,
    VmStart,
    VmStatus,
    VmUndefine,
    VolumeCommit,
    VolumeCreate,
    VolumeDelete,
    VolumeInfoCommand,
)
from overt.protocol.events import Heartbeat, HostStateReport, VmLifecycle
from overt.protocol.host import HostState, ReportedBond, ReportedNetwork, VirtMode
from overt.protocol.imageio import ImageExportStart, ImageExportStop, ImageTicket
from overt.protocol.networks import HostCommitNetworks, HostSetupNetworks
from overt.protocol.storage import (
    DiscoveredTargets,
    ExtentCommit,
    ExtentFormat,
    IscsiDiscover,
    IscsiLunList,
    IscsiLuns,
    LunMetadataWrite,
    LunRead,
    SharedVolumeCommit,
    SharedVolumeCreate,
    SharedVolumeDelete,
    SharedVolumeMetaUpdate,
    StorageDomainCreate,
    StorageDomainScan,
    StorageDomainUpdate,
    VolumeCopy,
    VolumeSeal,
    VolumeSealProgress,
)
from overt.protocol.storage_reach import DomainsReach, StorageDomainsProbe
from overt.protocol.vm import IscsiSource, NfsSource, VmSpec
from overt.protocol.vm_cdroms import VmCdromChange
from overt.protocol.vm_nics import VmNicLink, VmNicPlug, VmNicUnplug

log = logging.getLogger(__name__)

StorageProber = Callable[[StorageDomainsProbe], Awaitable[DomainsReach]]
IscsiScanner = Callable[[IscsiDiscover | IscsiLunList], Awaitable[DiscoveredTargets | IscsiLuns]]
T = TypeVar("T")


@dataclass(frozen=True)
class AgentTimings:
    stats_interval_s: float = 15.0
    heartbeat_interval_s: float = 5.0
    bond_watch_interval_s: float = 2.0  # how often the switch's bonds are read for changes


class Agent:
    """One node's agent for one run (one boot id)."""

    def __init__(self, hypervisor: Hypervisor, volumes: LocalVolumes,
                 idempotency: IdempotencyStore, transport: AgentTransport,
                 timings: AgentTimings | None = None,
                 networks: HostNetworking | None = None,
                 snmp: SnmpReporter | None = None,
                 leases: LeaseClient | None = None,
                 probe_storage: StorageProber | None = None,
                 imageio: NodeImageio | None = None,
                 iscsi: IscsiScanner | None = None) -> None:
        self.hypervisor = hypervisor
        self.imageio = imageio
        # How this node probes its data center's storage domains (QEMU's clients; the
        # fast lane's simulated nodes say what a test wants them to reach).
        self.probe_storage: StorageProber = probe_storage or reach.probe_domains
        # How this node discovers iSCSI targets and lists their LUNs (libiscsi; the fast
        # lane's simulated nodes read a simulated SAN).
        self.iscsi: IscsiScanner = iscsi or iscsi_scan.execute
        self.leases = leases
        self.volumes = volumes
        self.shared_storage = NfsDomains()
        self.idempotency = idempotency
        self.transport = transport
        self.timings = timings or AgentTimings()
        self.networks = networks
        self.snmp = snmp
        self.sequencer: EventSequencer | None = None
        self._started_at = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        self._vm_locks: dict[uuid.UUID, asyncio.Lock] = {}
        self._last_bonds: tuple[ReportedBond, ...] | None = None  # as last reported

    # -- running ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, report the full state, serve commands and start the event loops."""
        self.volumes.ensure_directory()
        await self.hypervisor.connect()
        host_uuid = await self.hypervisor.host_uuid()
        self.sequencer = EventSequencer(host_uuid)
        state = await self.host_state()
        log.info("agent started: host %s, boot %s, %d VM(s), domain type %s", host_uuid,
                 self.sequencer.boot_id, len(state.vms), self.hypervisor.virt_mode.value)
        for vm in state.vms:
            log.info("VM found", extra={"vm": vm.name, "vm_id": vm.vm_id, "state": vm.state})
        await self.transport.publish(self.sequencer.sequenced(HostStateReport(state=state)))
        if self.snmp is not None:
            capabilities = await self.hypervisor.capabilities()
            self.snmp.start(capabilities.hostname, host_uuid, await self._snmp_rows())
        await self.transport.start(self.handle)
        loops = [self._forward_events, self._send_heartbeats, self._send_stats]
        if self.networks is not None:
            loops.append(self._watch_bonds)
        for loop in loops:
            self._tasks.append(asyncio.create_task(self._forever(loop), name=loop.__name__))

    async def stop(self) -> None:
        """Stop serving and reporting. VMs keep running."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.imageio is not None:
            await self.imageio.close()
        if self.snmp is not None:
            await self.snmp.close()
        await self.transport.close()
        await self.hypervisor.close()
        self.idempotency.close()
        log.info("agent stopped; VMs keep running")

    async def _forever(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run one of the agent's loops; a failure is logged and the loop starts again."""
        while True:
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; restarting it", loop.__name__)
                await asyncio.sleep(1.0)

    # -- commands -----------------------------------------------------------------------

    async def handle(self, envelope: CommandEnvelope) -> Reply:
        """Execute one command and answer; never raises (the one error mapping)."""
        token = current_job.set(envelope.idempotency_key)
        try:
            if envelope.command.mutates:
                return await self.idempotency.once(envelope, lambda: self._reply(envelope))
            return await self._reply(envelope)
        except NodeFailure as failure:  # the store refused a reused key
            return Reply.failure(envelope.request_id, failure.to_error())
        finally:
            current_job.reset(token)

    async def _reply(self, envelope: CommandEnvelope) -> Reply:
        name = envelope.command.name
        try:
            result = await self._execute(envelope)
        except NodeFailure as failure:
            log.warning("%s refused: %s", name, failure.message, extra={"command": name})
            return Reply.failure(envelope.request_id, failure.to_error())
        except Exception:
            log.exception("%s failed unexpectedly", name, extra={"command": name})
            return Reply.failure(envelope.request_id, NodeError(
                code=ErrorCode.INTERNAL,
                message=f"the node agent failed while executing {name}; see its log"))
        return Reply.success(envelope.request_id, result)

    async def _execute(self, envelope: CommandEnvelope) -> BaseModel:
        command = envelope.command
        job = envelope.idempotency_key
        hyp = self.hypervisor
        match command:
            case HostCapabilitiesCommand():
                return await hyp.capabilities()
            case HostStateCommand():
                return await self.host_state()
            case VmDefine(spec=spec):
                return await self._locked(spec.id, hyp.define(spec, job))
            case VmStart(vm_id=vm_id, spec=spec, paused=paused, restore_from=saved,
                         memory_from=snapshot_state):
                image = self.volumes.inside(saved, "the saved memory image") if saved else None
                if snapshot_state is not None:
                    return await self._locked(vm_id, self._resume_snapshot(
                        vm_id, spec, snapshot_state, paused=paused, job=job))
                return await self._locked(vm_id, self._start_leased(
                    vm_id, spec, lambda: hyp.start(vm_id, spec, paused=paused, job=job,
                                                   restore_from=image)))
            case VmSave(vm_id=vm_id, path=path):
                image = self.volumes.inside(path, "the memory image")
                return await self._locked(vm_id, hyp.save(vm_id, image))
            case VmShutdown(vm_id=vm_id, timeout_s=timeout, force_after_timeout=force):
                return await self._locked(vm_id, hyp.shutdown(vm_id, timeout_s=timeout,
                                                              force=force))
            case VmDestroy(vm_id=vm_id):
                return await hyp.destroy(vm_id)  # never waits behind a slow shutdown
            case VmMigrate(vm_id=vm_id, destination_uri=uri, migration_uri=stream,
                           display_address=display, timeout_s=timeout, policy=policy,
                           lease_handover=token):
                return await self._locked(vm_id, self._migrate_leased(
                    vm_id, token, lambda: hyp.migrate(
                        vm_id, uri, migration_uri=stream, display_address=display,
                        timeout_s=timeout, policy=policy)))
            case VmLeaseTakeOver(vm_id=vm_id, lease=lease, token=token):
                await self._keeper_call(f"VM {vm_id}'s lease cannot move here",
                                        self._keeper().take_over(vm_id, lease, token))
                return Empty()
            case VmPrepareIncoming(vm_id=vm_id, luns=luns):
                await self._locked(vm_id, hyp.prepare_incoming(vm_id, {
                    chap.secret_id(lun.target): lun.chap for lun in luns
                    if lun.chap is not None}))
                return Empty()
            case VmAbandonIncoming(vm_id=vm_id):
                await self._locked(vm_id, hyp.abandon_incoming(vm_id))
                return Empty()
            case VmMigrationProgress(vm_id=vm_id):  # never waits behind the migration
                return await hyp.migration_progress(vm_id)
            case VmCancelMigration(vm_id=vm_id):  # never waits behind the migration
                return await hyp.cancel_migration(vm_id)
            case VmReboot(vm_id=vm_id):
                return await self._locked(vm_id, hyp.reboot(vm_id))
            case VmPause(vm_id=vm_id):
                return await self._locked(vm_id, hyp.pause(vm_id))
            case VmResume(vm_id=vm_id):
                return await self._locked(vm_id, hyp.resume(vm_id))
            case VmUndefine(vm_id=vm_id):
                return await self._locked(vm_id, hyp.undefine(vm_id))
            case VmStatus(vm_id=vm_id):
                return await hyp.status(vm_id)
            case VmSetTicket(vm_id=vm_id, password=password, expiry_s=expiry):
                return await hyp.set_ticket(vm_id, password, expiry)
            case VolumeCreate():
                return await self.volumes.create(command)
            case VolumeDelete(path=path):
                await self.volumes.delete(path)
                return Empty()
            case VolumeInfoCommand(path=path):
                return await self.volumes.info(path)
            case VolumeCommit():
                return await self.volumes.commit(command)
            case VmDiskSnapshot(vm_id=vm_id, disks=disks):
                for disk in disks:
                    if disk.reuse:
                        continue  # a shared domain's volume, reached by QEMU's own client
                    self.volumes.inside(disk.active, "the active volume")
                    self.volumes.inside(disk.overlay, "the new volume")
                await self._locked(vm_id, hyp.disk_snapshot(vm_id, disks))
                return Empty()
            case VmMemorySnapshot(vm_id=vm_id, disks=disks):
                if any(not disk.reuse for disk in disks):
                    raise NodeFailure(ErrorCode.BAD_REQUEST, "a memory snapshot's disks are "
                                      "volumes of shared domains, made beforehand")
                return await self._locked(vm_id, memory_states.take(command, hyp,
                                                                    self.volumes))
            case VmMemoryStagingDrop():
                await memory_states.drop(command, self.volumes)
                return Empty()
            case VmBlockCommit(vm_id=vm_id, disk=disk, top=top, base=base, timeout_s=timeout,
                               shared=shared):
                for path in (disk, top, base):
                    if not shared:  # a shared domain's volumes are found in the live chain
                        self.volumes.inside(path, "a volume to merge")
                await self._locked(vm_id, hyp.block_commit(vm_id, disk, top, base,
                                                           timeout_s=timeout))
                return Empty()
            case VmBlockCopy(vm_id=vm_id, disk_id=disk_id, destination=destination,
                             format=fmt, action=action):
                return await self._locked(vm_id, hyp.block_copy(vm_id, disk_id, destination,
                                                                fmt, action))
            case VmBlockCopyStatus(vm_id=vm_id, disk_id=disk_id, destination=destination):
                return await hyp.block_copy_state(vm_id, disk_id, destination)
            case HostSetupNetworks(networks=wanted, rollback_after_s=rollback, bonds=bonds):
                return await self._host_networks().setup(wanted, rollback, bonds)
            case HostCommitNetworks():
                return await self._host_networks().commit()
            case (StorageDomainCreate() | StorageDomainUpdate() | StorageDomainScan()
                  | SharedVolumeCreate() | SharedVolumeCommit() | SharedVolumeDelete()
                  | SharedVolumeMetaUpdate()):
                return await self.shared_storage.execute(command)
            case VolumeCopy():
                return await copies.copy_volume(command, self.volumes)
            case VolumeSeal():
                return await sealing.seal_volume(command, self.volumes, tcg=self._tcg())
            case VolumeSealProgress(volume=volume):
                return sealing.progress_of(volume)
            case LunRead() | LunMetadataWrite() | ExtentFormat() | ExtentCommit():
                return await iscsi_domain.execute(command)
            case StorageDomainsProbe():
                return await self.probe_storage(command)
            case IscsiDiscover() | IscsiLunList():
                return await self.iscsi(command)
            case ImageExportStart() | ImageExportStop() | ImageTicket():
                if self.imageio is None:
                    raise NodeFailure(ErrorCode.BAD_REQUEST, "this node serves no image "
                                      "transfers")
                return await self.imageio.execute(command)
            case VmNicPlug(vm_id=vm_id, nic=nic):
                return await self._locked(vm_id, hyp.plug_nic(vm_id, nic))
            case VmNicUnplug(vm_id=vm_id, nic=nic):
                return await self._locked(vm_id, hyp.unplug_nic(vm_id, nic))
            case VmNicLink(vm_id=vm_id, nic=nic):
                return await self._locked(vm_id, hyp.set_nic_link(vm_id, nic))
            case VmCdromChange(vm_id=vm_id, cdrom=cdrom):
                return await self._locked(vm_id, hyp.change_cdrom(vm_id, cdrom))
        raise NodeFailure(ErrorCode.BAD_REQUEST, f"this node does not know command {command.name}")

    async def _resume_snapshot(self, vm_id: uuid.UUID, spec: VmSpec | None,
                               state: NfsSource | IscsiSource, *, paused: bool,
                               job: str | None) -> BaseModel:
        """Start the VM from a memory snapshot's state: copied here first, the guest
        resumed from it over the volumes `spec` names."""
        local = await memory_states.fetch(vm_id, state, self.volumes)
        return await self._start_leased(vm_id, spec, lambda: self.hypervisor.start(
            vm_id, spec, paused=paused, job=job, restore_from=local, restore_as_spec=True))

    async def _start_leased(self, vm_id: uuid.UUID, spec: VmSpec | None,
                            start: Callable[[], Awaitable[T]]) -> T:
        """Start a VM that has a lease only once this node's keeper holds it."""
        if spec is None or spec.lease is None:
            return await start()
        if self.leases is None:
            raise NodeFailure(ErrorCode.INVALID_STATE, f"VM {vm_id} has a lease and this node "
                              "runs no lease keeper")
        try:
            reply = await self.leases.acquire(vm_id, spec.lease)
        except KeeperUnavailable as exc:
            raise NodeFailure(ErrorCode.INVALID_STATE, str(exc)) from None
        if not reply.get("ok"):
            raise NodeFailure(ErrorCode.INVALID_STATE, f"VM {vm_id} cannot start here: "
                              f"{reply.get('error')}")
        try:
            return await start()
        except BaseException:
            with contextlib.suppress(KeeperUnavailable, OSError):
                await self.leases.release(vm_id)
            raise

    async def _migrate_leased(self, vm_id: uuid.UUID, token: uuid.UUID | None,
                              migrate: Callable[[], Awaitable[T]]) -> T:
        """Offer a leased VM's lease to its destination for the migration; a migration
        that fails withdraws the offer, and the lease stays with this host."""
        if token is None:
            return await migrate()
        await self._keeper_call(f"VM {vm_id} cannot migrate",
                                self._keeper().offer(vm_id, token))
        try:
            return await migrate()
        except BaseException:
            with contextlib.suppress(KeeperUnavailable, OSError):
                reply = await self._keeper().offer(vm_id, None)
                if not reply.get("ok"):
                    log.error("the lease offer of VM %s was not withdrawn: %s", vm_id,
                              reply.get("error"), extra={"vm_id": str(vm_id)})
            raise

    def _keeper(self) -> LeaseClient:
        if self.leases is None:
            raise NodeFailure(ErrorCode.INVALID_STATE, "this node runs no lease keeper")
        return self.leases

    async def _keeper_call(self, context: str, call: Awaitable[dict[str, Any]]) -> None:
        """A keeper request whose refusal is the command's failure, with the reason."""
        try:
            reply = await call
        except KeeperUnavailable as exc:
            raise NodeFailure(ErrorCode.INVALID_STATE, f"{context}: {exc}") from None
        if not reply.get("ok"):
            raise NodeFailure(ErrorCode.INVALID_STATE, f"{context}: {reply.get('error')}")

    def _host_networks(self) -> HostNetworking:
        if self.networks is None:
            raise NodeFailure(ErrorCode.BAD_REQUEST, "this node does not manage host networks")
        return self.networks

    def _tcg(self) -> bool:
        """Whether libguestfs's appliance must run under TCG, as this host's VMs do."""
        try:
            return self.hypervisor.virt_mode is not VirtMode.KVM
        except RuntimeError:  # not connected yet: the safe (slower) choice
            return True

    async def _locked(self, vm_id: uuid.UUID, action: Awaitable[T]) -> T:
        """Commands on one VM run one at a time (destroy and status excepted)."""
        lock = self._vm_locks.setdefault(vm_id, asyncio.Lock())
        async with lock:
            return await action

    async def host_state(self) -> HostState:
        if self.sequencer is None:
            raise NodeFailure(ErrorCode.INTERNAL, "the agent is still starting")
        networks = await self._reported_networks()
        bonds = await self._reported_bonds()
        return HostState(host_uuid=self.sequencer.host_uuid,
                         vms=tuple(await self.hypervisor.list_vms()),
                         free_memory_mib=await self.hypervisor.free_memory_mib(),
                         seq=self.sequencer.last_seq, boot_id=self.sequencer.boot_id,
                         networks=networks, bonds=bonds)

    async def _reported_networks(self) -> tuple[ReportedNetwork, ...] | None:
        """The host networks as realised now; None (the engine keeps the last report) when
        this node manages none or cannot read them back."""
        if self.networks is None:
            return None
        try:
            return await self.networks.report()
        except Exception:
            log.exception("cannot read back the host's networks; reporting without them")
            return None

    async def _reported_bonds(self) -> tuple[ReportedBond, ...] | None:
        """The bonds on the host's switch; None as for `_reported_networks`."""
        if self.networks is None:
            return None
        try:
            self._last_bonds = await self.networks.report_bonds()
            return self._last_bonds
        except Exception:
            log.exception("cannot read the host's bonds; reporting without them")
            return None

    async def _snmp_rows(self) -> list[VmRow]:
        """Every VM for the SNMP table, with the memory of those running."""
        _, counters = await self.hypervisor.counters()
        memory = {(c.vm_id, c.name): c.memory_kib // 1024 for c in counters}
        return [row(vm, memory_mib=memory.get((vm.vm_id, vm.name), 0))
                for vm in await self.hypervisor.list_vms()]

    # -- events -------------------------------------------------------------------------

    def _require_sequencer(self) -> EventSequencer:
        if self.sequencer is None:
            raise RuntimeError("the agent has not started")
        return self.sequencer

    async def _forward_events(self) -> None:
        sequencer = self._require_sequencer()
        async for event in self.hypervisor.events():
            if isinstance(event, VmChanged):
                vm = event.vm
                envelope = sequencer.sequenced(VmLifecycle(vm=vm, detail=event.detail))
                log.info("VM %s", event.detail, extra={
                    "vm": vm.name, "vm_id": vm.vm_id, "state": vm.state, "seq": envelope.seq})
            elif isinstance(event, HypervisorReconnected):
                envelope = sequencer.sequenced(HostStateReport(state=await self.host_state()))
                log.info("reconnected to the hypervisor; full state sent",
                         extra={"seq": envelope.seq})
            await self.transport.publish(envelope)
            if self.snmp is not None:  # after the engine has it: SNMP is a side view
                if isinstance(event, VmChanged):
                    await self.snmp.vm_changed(row(event.vm))
                else:
                    self.snmp.publish(await self._snmp_rows())

    async def _send_heartbeats(self) -> None:
        """A heartbeat every interval while the hypervisor is connected, on time even when
        reading the host is slow.

        A heartbeat says the agent and its libvirt connection live. Its figures (VM count,
        free memory) come from libvirt calls, which can take seconds while a QEMU holds its
        domain's job (a monitor command waiting on storage that stopped answering): waiting
        for them made the engine judge a live host silent. A reading slower than half an
        interval is left running and the heartbeat carries the last figures read; a reading
        that fails stops the heartbeats until one succeeds, as a lost connection does."""
        sequencer = self._require_sequencer()
        interval = self.timings.heartbeat_interval_s
        last: tuple[int, int] | None = None
        reading: asyncio.Task[tuple[int, int]] | None = None
        try:
            while True:
                await asyncio.sleep(interval)
                if not self.hypervisor.connected:
                    continue  # the engine should see this node as not responding
                if reading is None:
                    reading = asyncio.create_task(self._heartbeat_figures())
                await asyncio.wait([reading], timeout=interval / 2 if last is not None else None)
                if reading.done():
                    last, reading = reading.result(), None  # a failure: the loop restarts
                elif last is not None:
                    log.debug("reading the host is slow; the heartbeat carries the last "
                              "figures read")
                if last is not None:
                    vm_count, free_memory_mib = last
                    await self.transport.publish(sequencer.sequenced(Heartbeat(
                        vm_count=vm_count, free_memory_mib=free_memory_mib,
                        uptime_s=round(time.monotonic() - self._started_at, 3))))
        finally:
            if reading is not None:
                reading.cancel()

    async def _heartbeat_figures(self) -> tuple[int, int]:
        """The VM count and free memory (MiB) a heartbeat carries."""
        vms = await self.hypervisor.list_vms()
        return len(vms), await self.hypervisor.free_memory_mib()

    async def _watch_bonds(self) -> None:
        """A full state report when a bond changes by itself (an active-backup bond failing
        over, a slave's link going down or up), so the engine shows it without a refresh."""
        sequencer = self._require_sequencer()
        while True:
            await asyncio.sleep(self.timings.bond_watch_interval_s)
            before = self._last_bonds
            bonds = await self._reported_bonds()
            if bonds is None or before is None or bonds == before:
                continue
            envelope = sequencer.sequenced(HostStateReport(state=await self.host_state()))
            log.info("the host's bonds changed; full state sent", extra={"seq": envelope.seq})
            await self.transport.publish(envelope)

    async def _send_stats(self) -> None:
        sequencer = self._require_sequencer()
        sampler = StatsSampler()
        while True:
            if self.hypervisor.connected:
                host, vms = await self.hypervisor.counters()
                if self.snmp is not None:
                    self.snmp.refresh_memory({vm_key(c.vm_id, c.name): c.memory_kib // 1024
                                              for c in vms})
                sample = sampler.sample(Reading(time.monotonic(), host, vms))
                if sample is not None and self.leases is not None:
                    with contextlib.suppress(KeeperUnavailable, OSError, ValueError,
                                             KeyError, TimeoutError):
                        sample = sample.model_copy(update={"leases": await self.leases.report()})
                if sample is not None:
                    await self.transport.publish_lossy(sequencer.lossy(sample))
            await asyncio.sleep(self.timings.stats_interval_s)
