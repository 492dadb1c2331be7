"""A SIMULATED hypervisor: VMs that are rows in memory, for scale benchmarks only.

It stands behind the same `Hypervisor` interface as the libvirt driver, so an
agent built on it speaks the real protocol over the real transport, but nothing
runs: a "started" VM is a state in a table, its stats are made up. It is never a
default; only `overt simulate` builds it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overt import __version__
from overt.node.errors import NodeFailure, invalid_state, no_such_vm
from overt.node.hypervisor.base import HostCounters, HypervisorEvent, VmChanged, VmCounters
from overt.node.simulated.migration import SimulatedMigration
from overt.node.storage import iscsi_domain, nfs_domain
from overt.node.storage.chap import iscsi_credentials
from overt.node.storage.local import (
    backing_chain,
    commit_into_backing,
    create_overlay,
    exists,
    rebase,
)
from overt.protocol import PROTOCOL_VERSION, ErrorCode
from overt.protocol.commands import BlockCopyState, DiskOverlay, MemorySaved, VmTicket
from overt.protocol.host import (
    HostCapabilities,
    KdumpStatus,
    NicInfo,
    VirtMode,
    VmState,
    VmStatusReport,
)
from overt.protocol.migration import MigrationPolicy, MigrationProgress, VmMigrated
from overt.protocol.storage import (
    ExtentCommit,
    ExtentRef,
    IscsiLunRef,
    extent_location,
    parse_extent_location,
)
from overt.protocol.vm import (
    CdromSpec,
    ChapAuth,
    DiskFormat,
    DiskSource,
    FileSource,
    IscsiSource,
    NfsSource,
    NicSpec,
    VmSpec,
)

SIMULATED = "simulated"
_ON = (VmState.RUNNING, VmState.PAUSED, VmState.PAUSED_ERROR)
_VM_CPU_SHARE = 0.05  # a simulated VM keeps 5 % of one CPU busy
_NIC_BYTES_PER_S = 2000


@dataclass(frozen=True)
class SimulatedTimings:
    """How long simulated actions take (a real VM start takes ~0.3 s on libvirt)."""

    start_s: float = 0.0
    shutdown_s: float = 0.0
    migrate_s: float = 0.0


@dataclass
class _BlockCopy:
    """A simulated block copy: ready once its state was read `polls_left` more times."""

    destination: DiskSource
    name: str
    format: DiskFormat
    polls_left: int


@dataclass
class _Vm:
    vm_id: uuid.UUID
    name: str
    memory_mib: int
    state: VmState
    persistent: bool = False
    spec_version: int = 1
    vnc_port: int | None = None
    cpu_time_ns: int = 0
    since: float = field(default_factory=time.monotonic)
    nics: dict[str, NicSpec] = field(default_factory=dict)  # by MAC
    cdrom: CdromSpec | None = None  # the drive and its media, as a cdrom change left it
    # Each file disk's chain, active volume first: a snapshot's overlay and a merge act
    # on the files themselves (qemu-img) when they exist, as QEMU would.
    chains: list[list[str]] = field(default_factory=list)
    # The NFS server of each volume of an NFS disk's chain (named by its path there): the
    # images are read where the node's NFS client finds them.
    servers: dict[str, str] = field(default_factory=dict)
    # The LUN and format of each iSCSI volume of the chains (named by `extent_location`):
    # a merge acts on the extents through the node's iSCSI code, as QEMU would.
    extents: dict[str, tuple[IscsiLunRef, DiskFormat]] = field(default_factory=dict)
    # The iSCSI secrets its disks name (by secret id): libvirt looks them up as it starts.
    secrets: frozenset[str] = frozenset()
    # Each disk's active volume and format (by disk id), and the block copies (live storage
    # migrations) running on them.
    disks: dict[uuid.UUID, tuple[DiskSource, DiskFormat]] = field(default_factory=dict)
    copies: dict[uuid.UUID, _BlockCopy] = field(default_factory=dict)
    # When its guest booted (unix time): a guest resumed from a saved state keeps the
    # boot time it was saved with, as a real guest's uptime goes on.
    booted_at: float = field(default_factory=time.time)

    def file(self, volume: str) -> str:
        """Where a volume of the chains is (an NFS volume: its QEMU URL)."""
        server = self.servers.get(volume)
        return volume if server is None else nfs_domain.image_url(server, volume)

    def report(self, reason: str = "") -> VmStatusReport:
        return VmStatusReport(vm_id=self.vm_id, name=self.name, state=self.state,
                              reason=reason, spec_version=self.spec_version,
                              vnc_port=self.vnc_port if self.state in _ON else None)

    def cpu_time(self, now: float) -> int:
        if self.state is VmState.RUNNING:
            return self.cpu_time_ns + int((now - self.since) * 1e9 * _VM_CPU_SHARE)
        return self.cpu_time_ns


class SimulatedHypervisor:
    """One simulated host: `host_uuid`, `memory_mib`, `cpus`, and VMs already `running`
    (id, name, memory MiB) when it starts, as a host whose agent restarts finds them."""

    def __init__(self, host_uuid: uuid.UUID, *, hostname: str, memory_mib: int = 262_144,
                 cpus: int = 64, running: Iterable[tuple[uuid.UUID, str, int]] = (),
                 timings: SimulatedTimings | None = None,
                 peers: dict[str, SimulatedHypervisor] | None = None,
                 nics: Iterable[NicInfo] = (),
                 kdump_status: KdumpStatus = KdumpStatus.DISABLED) -> None:
        self._host_uuid = host_uuid
        # What it reports of its kdump (a simulated machine has no crash kernel by default).
        self.kdump_status = kdump_status
        self.nics = tuple(nics)  # the host NICs it reports
        # The simulated hosts a VM migrates to, by the URI a `vm.migrate` names them with.
        self.peers = peers if peers is not None else {}
        # Set on a destination: why it refuses incoming migrations (a test's failure).
        self.refuse_incoming: str | None = None
        # A block copy is ready after its state was read this many times; set
        # `block_copy_fails` and the next read finds the copy ended (QEMU's mirror failed).
        self.block_copy_polls = 2
        self.block_copy_fails: str | None = None
        self.block_copies_started: list[tuple[uuid.UUID, str]] = []  # (disk id, destination)
        self._migrations: dict[uuid.UUID, SimulatedMigration] = {}  # outgoing, in flight
        self.migrations_made: list[SimulatedMigration] = []  # every one asked of this host
        self._hostname = hostname
        self._memory_mib = memory_mib
        self._cpus = cpus
        self.timings = timings or SimulatedTimings()
        self._vms: dict[uuid.UUID, _Vm] = {}
        # The spec of each VM's last start: what a real node would have run (tests look).
        self.started_specs: dict[uuid.UUID, VmSpec] = {}
        # libvirt's iSCSI CHAP secrets here, by secret id (tests look), and those kept for
        # VMs on their way here (`prepare_incoming`).
        self.secrets: dict[str, ChapAuth] = {}
        self._incoming: dict[uuid.UUID, frozenset[str]] = {}
        self._events: asyncio.Queue[HypervisorEvent] = asyncio.Queue()
        self._connected = False
        self._born = time.monotonic()
        self._ports = iter(range(5900, 65536))
        for vm_id, name, memory_mib in running:
            self._vms[vm_id] = _Vm(vm_id, name, memory_mib, VmState.RUNNING,
                                   vnc_port=next(self._ports))

    # -- connection and facts -------------------------------------------------------------

    @property
    def virt_mode(self) -> VirtMode:
        return VirtMode.QEMU

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        self._connected = True

    async def close(self) -> None:
        self._connected = False

    async def events(self) -> AsyncIterator[HypervisorEvent]:
        while True:
            yield await self._events.get()

    async def host_uuid(self) -> uuid.UUID:
        return self._host_uuid

    async def capabilities(self) -> HostCapabilities:
        return HostCapabilities(
            host_uuid=self._host_uuid, hostname=self._hostname, agent_version=__version__,
            protocol_version=PROTOCOL_VERSION, cpu_model="Simulated CPU", cpu_sockets=1,
            cpu_cores=self._cpus, cpu_threads=1, memory_mib=self._memory_mib,
            libvirt_version=SIMULATED, qemu_version=SIMULATED, virt_mode=VirtMode.QEMU,
            kernel=SIMULATED, nics=self.nics, kdump_status=self.kdump_status)

    async def list_vms(self) -> list[VmStatusReport]:
        return [vm.report() for vm in self._vms.values()]

    async def free_memory_mib(self) -> int:
        used = sum(vm.memory_mib for vm in self._vms.values() if vm.state in _ON)
        return max(0, self._memory_mib - used)

    async def counters(self) -> tuple[HostCounters, list[VmCounters]]:
        now = time.monotonic()
        elapsed_ns = int((now - self._born) * 1e9)
        vms = [VmCounters(vm_id=vm.vm_id, name=vm.name, domain_uuid=vm.vm_id,
                          cpu_time_ns=vm.cpu_time(now), memory_kib=vm.memory_mib * 1024,
                          net_rx_bytes=int((now - vm.since) * _NIC_BYTES_PER_S),
                          net_tx_bytes=int((now - vm.since) * _NIC_BYTES_PER_S // 2))
               for vm in self._vms.values() if vm.state in _ON]
        nic = int((now - self._born) * _NIC_BYTES_PER_S * (1 + len(vms)))
        host = HostCounters(
            cpu_busy_ns=sum(vm.cpu_time_ns for vm in vms), cpu_total_ns=elapsed_ns * self._cpus,
            memory_total_kib=self._memory_mib * 1024,
            memory_free_kib=await self.free_memory_mib() * 1024, nics={"eth0": (nic, nic // 2)})
        return host, vms

    async def status(self, vm_id: uuid.UUID) -> VmStatusReport:
        return self._vm(vm_id).report()

    # -- lifecycle ------------------------------------------------------------------------

    async def define(self, spec: VmSpec, job: str | None) -> VmStatusReport:
        vm = self._vms.get(spec.id)
        if vm is not None and vm.state in _ON:
            raise invalid_state(f"VM {vm.name} is running; stop it before defining it again")
        self.secrets.update(iscsi_credentials(spec))
        vm = self._vms[spec.id] = _Vm(spec.id, spec.name, spec.memory_mib, VmState.SHUTOFF,
                                      persistent=True, spec_version=spec.spec_version,
                                      nics={nic.mac: nic for nic in spec.nics},
                                      secrets=frozenset(iscsi_credentials(spec)))
        return vm.report()

    async def start(self, vm_id: uuid.UUID, spec: VmSpec | None, *, paused: bool,
                    job: str | None, restore_from: Path | None = None,
                    restore_as_spec: bool = False) -> VmStatusReport:
        vm = self._vms.get(vm_id)
        if vm is not None and vm.state in _ON:
            raise invalid_state(f"VM {vm.name} is already running")
        if spec is None and vm is None:
            raise no_such_vm(vm_id)
        memory = spec.memory_mib if spec is not None else vm.memory_mib  # type: ignore[union-attr]
        if memory > await self.free_memory_mib():
            raise NodeFailure(ErrorCode.NOT_ENOUGH_MEMORY,
                              f"host {self._hostname} has not {memory} MiB free")
        await asyncio.sleep(self.timings.start_s)
        if spec is not None:
            self.started_specs[vm_id] = spec
            self.secrets.update(iscsi_credentials(spec))
            persistent = vm.persistent if vm is not None else False
            vm = self._vms[vm_id] = _Vm(vm_id, spec.name, spec.memory_mib, VmState.SHUTOFF,
                                        persistent=persistent, spec_version=spec.spec_version,
                                        nics={nic.mac: nic for nic in spec.nics},
                                        cdrom=spec.cdrom,
                                        chains=_chains(spec), servers=_servers(spec),
                                        extents=_extents(spec),
                                        secrets=frozenset(iscsi_credentials(spec)),
                                        disks={d.id: (d.source, d.format)
                                               for d in spec.disks})
        assert vm is not None
        if restore_from is not None and restore_as_spec:
            # The copy from a raw volume ends padded to a sector, as a real one would.
            state = await asyncio.to_thread(saved_state, restore_from)
            if state.get("vm_id") != str(vm_id):
                raise NodeFailure(ErrorCode.HYPERVISOR_ERROR, f"the saved state {restore_from} "
                                  f"is of VM {state.get('vm_id')}, not {vm_id}")
            vm.booted_at = float(state["booted_at"])
            await asyncio.to_thread(restore_from.unlink, missing_ok=True)
        vm.vnc_port = next(self._ports)
        return self._change(vm, VmState.PAUSED if paused else VmState.RUNNING,
                            "started/restored" if restore_from else "started/booted")

    async def save(self, vm_id: uuid.UUID, path: Path) -> VmStatusReport:
        """As libvirt: the domain stops (its event says so) and the reply says suspended."""
        vm = self._running(vm_id)
        self._stop(vm, "stopped/saved")
        return VmStatusReport(vm_id=vm_id, name=vm.name, state=VmState.SUSPENDED,
                              reason="saved to disk", spec_version=vm.spec_version)

    async def shutdown(self, vm_id: uuid.UUID, *, timeout_s: float,
                       force: bool) -> VmStatusReport:
        vm = self._running(vm_id)
        await asyncio.sleep(self.timings.shutdown_s)
        return self._stop(vm, "stopped/shutdown")

    async def destroy(self, vm_id: uuid.UUID) -> VmStatusReport:
        vm = self._vm(vm_id)
        if vm.state not in _ON:
            return vm.report()
        return self._stop(vm, "stopped/destroyed")

    async def migrate(self, vm_id: uuid.UUID, destination_uri: str, *,
                      migration_uri: str | None, display_address: str | None,
                      timeout_s: float, policy: MigrationPolicy) -> VmMigrated:
        """The VM moves to the peer named `destination_uri`: it runs there first (its
        event says so), then it is gone here, as libvirt's handover does."""
        vm = self._running(vm_id)
        peer = self.peers.get(destination_uri)
        if peer is None:
            raise NodeFailure(ErrorCode.HYPERVISOR_ERROR,
                              f"cannot reach the destination {destination_uri}")
        migration = self._migrations[vm_id] = SimulatedMigration(
            vm.memory_mib, self.timings.migrate_s, policy, destination_uri, migration_uri)
        self.migrations_made.append(migration)
        try:
            async with asyncio.timeout(self.timings.migrate_s):
                await migration.cancelled.wait()
        except TimeoutError:
            pass  # the memory is copied
        finally:
            del self._migrations[vm_id]
        if migration.cancelled.is_set():
            raise NodeFailure(ErrorCode.HYPERVISOR_ERROR,
                              f"the migration of VM {vm.name} was cancelled")
        await peer.accept_migration(vm)
        del self._vms[vm_id]
        gone = self._change(vm, VmState.GONE, "stopped/migrated")
        self._prune_secrets()
        return VmMigrated(**gone.model_dump(), migration=migration.outcome())

    async def migration_progress(self, vm_id: uuid.UUID) -> MigrationProgress:
        migration = self._migrations.get(vm_id)  # a VM gone from here migrates no more
        return migration.progress() if migration else MigrationProgress(active=False)

    def migrating(self) -> set[uuid.UUID]:
        """The VMs whose outgoing migration is in flight."""
        return set(self._migrations)

    async def cancel_migration(self, vm_id: uuid.UUID) -> VmStatusReport:
        vm = self._running(vm_id)
        migration = self._migrations.get(vm_id)
        if migration is None:
            raise invalid_state(f"VM {vm.name} is not migrating")
        migration.cancelled.set()
        return vm.report()

    async def prepare_incoming(self, vm_id: uuid.UUID,
                               credentials: dict[str, ChapAuth]) -> None:
        self.secrets.update(credentials)
        self._incoming[vm_id] = frozenset(credentials)

    async def abandon_incoming(self, vm_id: uuid.UUID) -> None:
        self._incoming.pop(vm_id, None)
        self._prune_secrets()

    async def accept_migration(self, incoming: _Vm) -> None:
        """The destination's side of a migration; as libvirt, it cannot start a VM whose
        disks name an iSCSI secret it lacks."""
        if self.refuse_incoming is not None:
            raise NodeFailure(ErrorCode.INVALID_STATE, self.refuse_incoming)
        missing = sorted(incoming.secrets - self.secrets.keys())
        if missing:
            raise NodeFailure(ErrorCode.HYPERVISOR_ERROR, "no secret with 'iscsi' usage "
                              f"matching '{missing[0]}' on host {self._hostname}")
        if incoming.memory_mib > await self.free_memory_mib():
            raise NodeFailure(ErrorCode.NOT_ENOUGH_MEMORY,
                              f"host {self._hostname} has not {incoming.memory_mib} MiB free")
        vm = self._vms[incoming.vm_id] = _Vm(
            incoming.vm_id, incoming.name, incoming.memory_mib, VmState.SHUTOFF,
            persistent=incoming.persistent, spec_version=incoming.spec_version,
            vnc_port=next(self._ports), nics=dict(incoming.nics), secrets=incoming.secrets,
            disks=dict(incoming.disks))
        self._incoming.pop(vm.vm_id, None)
        self._change(vm, VmState.RUNNING, "started/migrated")

    async def reboot(self, vm_id: uuid.UUID) -> VmStatusReport:
        vm = self._running(vm_id)
        self._events.put_nowait(VmChanged(vm.report(), "rebooted"))
        return vm.report()

    async def pause(self, vm_id: uuid.UUID) -> VmStatusReport:
        return self._change(self._running(vm_id), VmState.PAUSED, "suspended/paused")

    async def resume(self, vm_id: uuid.UUID) -> VmStatusReport:
        vm = self._vm(vm_id)
        if vm.state not in (VmState.PAUSED, VmState.PAUSED_ERROR):
            raise invalid_state(f"VM {vm.name} is not paused")
        return self._change(vm, VmState.RUNNING, "resumed/unpaused")

    async def undefine(self, vm_id: uuid.UUID) -> VmStatusReport:
        vm = self._vm(vm_id)
        if vm.state in _ON:
            raise invalid_state(f"VM {vm.name} is running; stop it first")
        del self._vms[vm_id]
        vm.state = VmState.GONE
        self._prune_secrets()
        return vm.report()

    async def set_ticket(self, vm_id: uuid.UUID, password: str, expiry_s: int) -> VmTicket:
        vm = self._running(vm_id)
        assert vm.vnc_port is not None
        return VmTicket(vnc_port=vm.vnc_port, expires_at=time.time() + expiry_s)

    async def plug_nic(self, vm_id: uuid.UUID, nic: NicSpec) -> VmStatusReport:
        vm = self._running(vm_id)
        vm.nics[nic.mac] = nic
        return vm.report()

    async def unplug_nic(self, vm_id: uuid.UUID, nic: NicSpec) -> VmStatusReport:
        vm = self._running(vm_id)
        vm.nics.pop(nic.mac, None)
        return vm.report()

    async def set_nic_link(self, vm_id: uuid.UUID, nic: NicSpec) -> VmStatusReport:
        vm = self._running(vm_id)
        if nic.mac not in vm.nics:
            raise invalid_state(f"VM {vm.name} has no plugged NIC {nic.name} ({nic.mac})")
        vm.nics[nic.mac] = nic
        return vm.report()

    async def change_cdrom(self, vm_id: uuid.UUID, cdrom: CdromSpec) -> VmStatusReport:
        vm = self._running(vm_id)
        if vm.cdrom is None:
            raise invalid_state(f"VM {vm.name} has no cdrom drive (it was started without one)")
        vm.cdrom = cdrom
        return vm.report()

    # -- disks of a running VM ---------------------------------------------------------

    async def memory_snapshot(self, vm_id: uuid.UUID, disks: Sequence[DiskOverlay],
                              memory: Path, metadata: Path) -> MemorySaved:
        """As libvirt: the state (here the guest's boot time, as JSON) and the domain's
        description written next to the disks' snapshot; taken already: success."""
        vm = self._running(vm_id)
        taken = all(any(c[0] == d.overlay for c in vm.chains) for d in disks)
        if taken:
            return MemorySaved()
        state = json.dumps({"vm_id": str(vm_id), "booted_at": vm.booted_at,
                            "memory_mib": vm.memory_mib})

        def write() -> None:
            memory.parent.mkdir(parents=True, exist_ok=True)
            memory.write_text(state)
            metadata.write_text(f"<domain><name>{vm.name}</name></domain>")
        await asyncio.to_thread(write)
        await self.disk_snapshot(vm_id, disks)
        return MemorySaved(pause_ms=1.0, total_ms=2.0, memory_bytes=len(state))

    def guest_booted_at(self, vm_id: uuid.UUID) -> float:
        """When the running guest booted (its uptime's origin)."""
        return self._vm(vm_id).booted_at

    async def disk_snapshot(self, vm_id: uuid.UUID, disks: Sequence[DiskOverlay]) -> None:
        vm = self._running(vm_id)
        for disk in disks:
            chain = next((c for c in vm.chains if disk.overlay in c or disk.active == c[0]),
                         None)
            if chain is None:
                raise NodeFailure(ErrorCode.IMAGE_MISSING,
                                  f"VM {vm.name} writes no volume {disk.active}")
            if chain[0] == disk.overlay:
                continue  # taken already
            if disk.active in vm.servers:
                vm.servers[disk.overlay] = vm.servers[disk.active]
            if disk.active in vm.extents:
                vm.extents[disk.overlay] = (vm.extents[disk.active][0], DiskFormat.QCOW2)
            if disk.reuse:
                if not exists(vm.file(disk.overlay)) and exists(vm.file(disk.active)):
                    raise NodeFailure(ErrorCode.IMAGE_MISSING,
                                      f"volume {disk.overlay} was not made beforehand")
            elif exists(disk.active):
                await create_overlay(Path(disk.overlay), Path(disk.active), DiskFormat.QCOW2
                                     if _is_qcow2(Path(disk.active)) else DiskFormat.RAW)
            chain.insert(0, disk.overlay)

    async def block_commit(self, vm_id: uuid.UUID, disk: str, top: str, base: str, *,
                           timeout_s: float) -> None:
        vm = self._running(vm_id)
        chain = next((c for c in vm.chains if c[0] in (disk, base)), None)
        if chain is None:
            raise NodeFailure(ErrorCode.IMAGE_MISSING, f"no disk of VM {vm.name} writes {disk}")
        if top not in chain:
            return  # merged already
        if exists(chain[0]):  # what QEMU would have read from the images at start
            chain[:] = await backing_chain(Path(chain[0]))
        at = chain.index(top)
        if at + 1 >= len(chain) or chain[at + 1] != base:
            raise invalid_state(f"{base} is not the volume under {top} in VM {vm.name}")
        if top in vm.extents and base in vm.extents:
            await _commit_extent(vm, top, base, chain[at - 1] if at > 0 else None)
        elif exists(vm.file(top)):
            await commit_into_backing(Path(vm.file(top)))
            if at > 0:
                await rebase(Path(vm.file(chain[at - 1])), Path(vm.file(base)), DiskFormat.QCOW2
                             if _is_qcow2(Path(vm.file(base))) else DiskFormat.RAW)
        del chain[at]

    async def block_copy(self, vm_id: uuid.UUID, disk_id: uuid.UUID, destination: DiskSource,
                         fmt: DiskFormat, action: str) -> BlockCopyState:
        vm = self._running(vm_id)
        now = await self.block_copy_state(vm_id, disk_id, destination)
        if action == "start":
            if now.on_destination or now.job != "none":
                return now
            name = _volume_name(destination)
            vm.copies[disk_id] = _BlockCopy(destination, name, fmt, self.block_copy_polls)
            self.block_copies_started.append((disk_id, name))
        elif action == "abort":
            vm.copies.pop(disk_id, None)
        elif action == "pivot":
            if now.on_destination:
                return now
            if now.job != "ready":
                raise invalid_state(f"the block copy of disk {disk_id} of VM {vm.name} is "
                                    "not ready")
            await self._pivot(vm, disk_id, vm.copies.pop(disk_id))
        else:
            raise NodeFailure(ErrorCode.BAD_REQUEST, f"a block copy has no action {action!r}")
        return await self.block_copy_state(vm_id, disk_id, destination)

    async def block_copy_state(self, vm_id: uuid.UUID, disk_id: uuid.UUID,
                               destination: DiskSource) -> BlockCopyState:
        vm = self._running(vm_id)
        if disk_id not in vm.disks:
            raise NodeFailure(ErrorCode.IMAGE_MISSING, f"VM {vm.name} has no disk {disk_id}")
        name = _volume_name(destination)
        if _volume_name(vm.disks[disk_id][0]) == name:
            return BlockCopyState(on_destination=True)
        running = vm.copies.get(disk_id)
        if running is None:
            return BlockCopyState(on_destination=False)
        if running.name != name:
            raise invalid_state(f"disk {disk_id} of VM {vm.name} is busy with another "
                                "block job")
        if self.block_copy_fails is not None:
            del vm.copies[disk_id]
            return BlockCopyState(on_destination=False)
        running.polls_left = max(0, running.polls_left - 1)
        total = 1 << 20
        copied = total if running.polls_left == 0 else total // (running.polls_left + 1)
        return BlockCopyState(on_destination=False, copied=copied, total=total,
                              job="ready" if running.polls_left == 0 else "copying")

    async def _pivot(self, vm: _Vm, disk_id: uuid.UUID, done: _BlockCopy) -> None:
        """What the mirror wrote lands on the destination (qemu-img, as QEMU's copy
        would), and the disk writes there from now on."""
        source, fmt = vm.disks[disk_id]
        luns = [s for s in (source, done.destination) if isinstance(s, IscsiSource)]
        await iscsi_domain.run_qemu_img(
            ["qemu-img", "convert", "-q", "-n", "-O", done.format.value,
             _image(source, fmt), _image(done.destination, done.format)],
            "copying a disk live", luns)
        old = _volume_name(source)
        for chain in vm.chains:
            if chain and chain[0] == old:
                chain[0] = done.name
        if isinstance(done.destination, NfsSource):
            vm.servers[done.name] = done.destination.server
        name = _extent_name(done.destination)
        if name is not None and isinstance(done.destination, IscsiSource):
            vm.extents[name] = (IscsiLunRef(
                portal=done.destination.portal, target=done.destination.target,
                lun=done.destination.lun, chap=done.destination.chap), done.format)
        vm.disks[disk_id] = (done.destination, done.format)

    # -- helpers --------------------------------------------------------------------------

    def storage_error(self, vm_id: uuid.UUID) -> VmStatusReport:
        """A disk's storage fails the running VM's I/O: its disks' error policy pauses it
        (libvirt's "paused, I/O error") until it is resumed."""
        return self._change(self._running(vm_id), VmState.PAUSED_ERROR, "suspended/io_error")

    def power_off(self) -> None:
        """The simulated machine loses its power: every VM is gone at once, and no event
        says so (nothing runs to send one)."""
        self._vms.clear()
        self._migrations.clear()

    def _vm(self, vm_id: uuid.UUID) -> _Vm:
        vm = self._vms.get(vm_id)
        if vm is None:
            raise no_such_vm(vm_id)
        return vm

    def _running(self, vm_id: uuid.UUID) -> _Vm:
        vm = self._vm(vm_id)
        if vm.state not in _ON:
            raise invalid_state(f"VM {vm.name} is not running")
        return vm

    def _stop(self, vm: _Vm, detail: str) -> VmStatusReport:
        if vm.persistent:
            return self._change(vm, VmState.SHUTOFF, detail)
        del self._vms[vm.vm_id]
        report = self._change(vm, VmState.GONE, detail)
        self._prune_secrets()
        return report

    def _prune_secrets(self) -> None:
        """As the libvirt driver: a secret no VM here names, nor one on its way, goes."""
        used = set().union(*(vm.secrets for vm in self._vms.values()),
                           *self._incoming.values())
        for usage in set(self.secrets) - used:
            del self.secrets[usage]

    def _change(self, vm: _Vm, state: VmState, detail: str) -> VmStatusReport:
        now = time.monotonic()
        vm.cpu_time_ns, vm.since, vm.state = vm.cpu_time(now), now, state
        report = vm.report(reason=detail)
        self._events.put_nowait(VmChanged(report, detail))
        return report


def saved_state(path: Path) -> dict[str, Any]:
    """The state a memory snapshot saved (JSON), without the padding after it: a copy from
    a raw volume ends padded to a sector, as a real one would, and the copy of a memory
    volume is the whole volume (hundreds of MiB of zeros), read only up to them."""
    text = bytearray()
    with path.open("rb") as saved:
        while chunk := saved.read(1 << 16):
            end = chunk.find(b"\0")
            text += chunk if end < 0 else chunk[:end]
            if end >= 0:
                break
    found: dict[str, Any] = json.loads(text)
    return found


def _is_qcow2(path: Path) -> bool:
    with path.open("rb") as image:
        return image.read(4) == b"QFI\xfb"


def _chains(spec: VmSpec) -> list[list[str]]:
    """Each file, NFS or iSCSI-extent disk's chain, active volume first (NFS and iSCSI: as
    libvirt is given it)."""
    chains = []
    for disk in spec.disks:
        if isinstance(disk.source, FileSource):
            chains.append([disk.source.path])
        elif isinstance(disk.source, NfsSource):
            chains.append([disk.source.path, *(layer.source.path for layer in disk.chain
                                               if isinstance(layer.source, NfsSource))])
        elif (name := _extent_name(disk.source)) is not None:
            chains.append([name, *(n for layer in disk.chain
                                   if (n := _extent_name(layer.source)) is not None)])
    return chains


def _volume_name(source: DiskSource) -> str:
    """A volume as the chains name it (a whole LUN: its target and number)."""
    if isinstance(source, IscsiSource):
        return _extent_name(source) or f"{source.target}/{source.lun}"
    return source.path


def _image(source: DiskSource, fmt: DiskFormat | None) -> str:
    """qemu-img's name for a volume (an extent: its window of the LUN, as `fmt`)."""
    if isinstance(source, NfsSource):
        return nfs_domain.image_url(source.server, source.path)
    if isinstance(source, IscsiSource) and source.offset is not None and source.size is not None:
        return iscsi_domain.image_json(iscsi_domain.window(source, source.offset, source.size,
                                                           fmt))
    if isinstance(source, IscsiSource):
        raise NodeFailure(ErrorCode.BAD_REQUEST, "a block copy goes to a volume, not a LUN")
    return source.path


def _extent_name(source: DiskSource) -> str | None:
    if not isinstance(source, IscsiSource) or source.offset is None or source.size is None:
        return None
    return extent_location(source.target, source.lun, source.offset, source.size)


def _extents(spec: VmSpec) -> dict[str, tuple[IscsiLunRef, DiskFormat]]:
    found = {}
    for disk in spec.disks:
        layers = [(disk.source, disk.format),
                  *((layer.source, layer.format) for layer in disk.chain)]
        for source, fmt in layers:
            name = _extent_name(source)
            if name is not None and isinstance(source, IscsiSource):
                found[name] = (IscsiLunRef(portal=source.portal, target=source.target,
                                           lun=source.lun, chap=source.chap), fmt)
    return found


async def _commit_extent(vm: _Vm, top: str, base: str, child: str | None) -> None:
    """QEMU's block commit of one extent into the one under it, on the LUN itself."""
    def ref(name: str) -> ExtentRef:
        where = parse_extent_location(name)
        assert where is not None
        return ExtentRef(offset=where[2], size=where[3], format=vm.extents[name][1])
    await iscsi_domain.execute(ExtentCommit(
        lun=vm.extents[top][0], top=ref(top), base=ref(base),
        child=ref(child) if child is not None else None))


def _servers(spec: VmSpec) -> dict[str, str]:
    servers = {}
    for disk in spec.disks:
        for source in (disk.source, *(layer.source for layer in disk.chain)):
            if isinstance(source, NfsSource):
                servers[source.path] = source.server
    return servers
