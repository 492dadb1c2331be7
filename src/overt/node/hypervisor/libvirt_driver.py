"""The libvirt hypervisor driver: VM lifecycle, host facts and events over libvirt-python.

Every libvirt call runs through `BlockingCalls`; libvirt errors become `NodeFailure`s.
Domain name = VmSpec name, domain UUID = VmSpec id; Overt's metadata marks our VMs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import libvirt

from overt import __version__
from overt.node import host_nics
from overt.node.errors import NodeFailure, bad_request, invalid_state, no_such_vm
from overt.node.hypervisor import libvirt_secrets
from overt.node.hypervisor.base import (
    HostCounters,
    HypervisorEvent,
    HypervisorReconnected,
    VmChanged,
    VmCounters,
)
from overt.node.hypervisor.config_drive import ConfigDrives
from overt.node.hypervisor.domain_xml import (
    OvertMetadata,
    domain_xml,
    parse_libvirt_xml,
    vnc_port,
)
from overt.node.hypervisor.executor import BlockingCalls
from overt.node.hypervisor.libvirt_block_copy import BlockCopies
from overt.node.hypervisor.libvirt_cdroms import LiveCdrom
from overt.node.hypervisor.libvirt_connection import (
    LibvirtConnection,
    RawDomainEvent,
    Reconnected,
)
from overt.node.hypervisor.libvirt_errors import node_failure
from overt.node.hypervisor.libvirt_host import (
    block_stats_skipped,
    host_counters,
    host_memory,
    parse_capabilities,
    sum_indexed,
    version_string,
)
from overt.node.hypervisor.libvirt_nics import LiveNics
from overt.node.hypervisor.libvirt_outgoing import OutgoingMigrations
from overt.node.hypervisor.libvirt_snapshots import LiveDisks
from overt.node.hypervisor.libvirt_states import event_detail, state_after_event, vm_state
from overt.node.hypervisor.virt_mode_cache import VirtModeChoice
from overt.node.hypervisor.virt_probe import is_probe
from overt.node.kdump import kdump_status
from overt.node.ovs_ports import ovs_bridges
from overt.node.storage.chap import secret_id
from overt.protocol import PROTOCOL_VERSION, ErrorCode
from overt.protocol.commands import BlockCopyState, DiskOverlay, MemorySaved, VmTicket
from overt.protocol.host import HostCapabilities, VirtMode, VmState, VmStatusReport
from overt.protocol.migration import MigrationPolicy, MigrationProgress, VmMigrated
from overt.protocol.vm import (
    CdromSpec,
    ChapAuth,
    DiskFormat,
    DiskSource,
    IscsiSource,
    NicSpec,
    VmSpec,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
# How long a migration's destination keeps the secrets of a VM it was prepared for that
# has not come: longer than the engine lets a migration run (10 min); past it, the engine
# that prepared it died or gave up without `abandon_incoming`, and the next prune (a VM
# stopping or leaving, another preparation) removes them.
INCOMING_KEEP_S = 900.0

ACPI_RETRY_S = 5.0  # a press sent before the guest's ACPI handler runs is lost: press again
POLL_S = 0.2
_BULK_STATS = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
               | libvirt.VIR_DOMAIN_STATS_BALLOON | libvirt.VIR_DOMAIN_STATS_INTERFACE
               | libvirt.VIR_DOMAIN_STATS_BLOCK)


class LibvirtHypervisor:
    """A node's libvirtd, reached at `uri` (a lab node's own socket, or qemu:///system)."""

    def __init__(self, uri: str, virt_mode: VirtModeChoice,
                 calls: BlockingCalls | None = None,
                 config_drives: ConfigDrives | None = None,
                 max_outgoing_migrations: int = 2) -> None:
        self.calls = calls or BlockingCalls()
        self.config_drives = config_drives or ConfigDrives()
        self.connection = LibvirtConnection(uri, self.calls)
        self._virt_choice = virt_mode
        self._virt_mode: VirtMode | None = None
        self._known: dict[str, OvertMetadata] = {}  # domain uuid -> Overt's facts
        # Each domain's disk counters (read, written) last read: a reading that had to skip
        # them (its job held) repeats them rather than reporting zero.
        self._disk_bytes: dict[str, tuple[int, int]] = {}
        self.outgoing = OutgoingMigrations(self.calls, max_at_once=max_outgoing_migrations)
        self._nics = LiveNics(self.calls)
        self._cdrom = LiveCdrom(self.calls)
        self._disks = LiveDisks(self.calls)
        self._copies = BlockCopies(self.calls)
        # The iSCSI secrets of VMs on their way here (`prepare_incoming`), by VM id, with
        # when the preparation lapses (`INCOMING_KEEP_S`).
        self._incoming: dict[uuid.UUID, tuple[frozenset[str], float]] = {}
        self.monotonic: Callable[[], float] = time.monotonic  # tests move it
        # The iSCSI secrets of VMs whose domain is being made (`_named_secrets`), by VM id.
        self._starting: dict[uuid.UUID, frozenset[str]] = {}
        # Secrets are defined and pruned under this lock.
        self._secrets_lock = asyncio.Lock()

    @property
    def virt_mode(self) -> VirtMode:
        if self._virt_mode is None:
            raise RuntimeError("the hypervisor is not connected yet")
        return self._virt_mode

    @property
    def connected(self) -> bool:
        return self.connection.connected

    async def connect(self) -> None:
        conn = await self.connection.open()
        self._virt_mode = await self.calls.run(self._virt_choice.resolve, conn)
        await self.list_vms()  # learns Overt's VMs from their metadata

    async def close(self) -> None:
        await self.connection.close()
        self.calls.shutdown()

    async def _call(self, action: str, func: Callable[..., T], *args: object) -> T:
        try:
            return await self.calls.run(func, *args)
        except libvirt.libvirtError as exc:
            raise node_failure(exc, action) from None

    # -- queries ----------------------------------------------------------------------

    async def host_uuid(self) -> uuid.UUID:
        conn = self.connection.get()
        return parse_capabilities(await self._call("reading host capabilities",
                                                   conn.getCapabilities)).host_uuid

    async def capabilities(self) -> HostCapabilities:
        conn = self.connection.get()
        cpu = parse_capabilities(await self._call("reading host capabilities",
                                                  conn.getCapabilities))
        memory = await self._call("reading host memory", host_memory, conn)
        nics = await asyncio.to_thread(host_nics.host_nics)
        kdump = await asyncio.to_thread(kdump_status)
        return HostCapabilities(
            host_uuid=cpu.host_uuid, hostname=socket.gethostname(), agent_version=__version__,
            protocol_version=PROTOCOL_VERSION, cpu_model=cpu.model, cpu_sockets=cpu.sockets,
            cpu_cores=cpu.cores, cpu_threads=cpu.threads, memory_mib=memory.total_kib // 1024, nics=nics,
            libvirt_version=version_string(await self._call("reading versions",
                                                            conn.getLibVersion)),
            qemu_version=version_string(await self._call("reading versions", conn.getVersion)),
            virt_mode=self.virt_mode, kernel=os.uname().release, kdump_status=kdump)

    async def list_vms(self) -> list[VmStatusReport]:
        conn = self.connection.get()
        domains = await self._call("listing domains", conn.listAllDomains, 0)
        reports = []
        for dom in domains:
            if is_probe(dom.name()):
                continue
            try:
                reports.append(await self._report(dom))
            except NodeFailure as failure:
                if failure.code is not ErrorCode.NO_SUCH_VM:  # gone meanwhile
                    raise
        return reports

    async def free_memory_mib(self) -> int:
        conn = self.connection.get()
        counters = await self._call("reading host memory", host_counters, conn, {})
        return counters.memory_free_kib // 1024

    async def counters(self) -> tuple[HostCounters, list[VmCounters]]:
        conn = self.connection.get()
        nics = await asyncio.to_thread(host_nics.nic_counters)
        host = await self._call("reading host stats", host_counters, conn, nics)
        # NOWAIT, as VDSM asks: a domain whose job is held (a monitor command waiting on
        # storage) gets what needs no job instead of holding this call, and with it the
        # connection every other call of the agent (its heartbeats too), for up to 30 s.
        records = await self._call(
            "reading domain stats", conn.getAllDomainStats, _BULK_STATS,
            libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
            | libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT)
        vms: list[VmCounters] = []
        disks: dict[str, tuple[int, int]] = {}
        for dom, stats in records:
            domain_uuid = dom.UUIDString()
            meta = self._known.get(domain_uuid)
            if block_stats_skipped(stats):
                disk_bytes = self._disk_bytes.get(domain_uuid, (0, 0))
            else:
                disk_bytes = (sum_indexed(stats, "block", "rd.bytes"),
                              sum_indexed(stats, "block", "wr.bytes"))
            disks[domain_uuid] = disk_bytes
            vms.append(VmCounters(
                vm_id=meta.vm_id if meta else None, name=dom.name(),
                domain_uuid=uuid.UUID(domain_uuid), cpu_time_ns=int(stats.get("cpu.time", 0)),
                memory_kib=int(stats.get("balloon.current", 0)),
                disk_read_bytes=disk_bytes[0], disk_write_bytes=disk_bytes[1],
                net_rx_bytes=sum_indexed(stats, "net", "rx.bytes"),
                net_tx_bytes=sum_indexed(stats, "net", "tx.bytes")))
        self._disk_bytes = disks
        return host, vms

    async def status(self, vm_id: uuid.UUID) -> VmStatusReport:
        return await self._report(await self._domain(vm_id))

    # -- lifecycle ----------------------------------------------------------------------

    async def define(self, spec: VmSpec, job: str | None) -> VmStatusReport:
        prepare_console_log(spec)
        conn = self.connection.get()
        meta = OvertMetadata(spec.id, spec.spec_version, job)
        xml = domain_xml(spec, self.virt_mode, meta, config_drive=self._write_drive(spec),
                         ovs_bridges=await _ovs_bridges(spec.nics))
        async with self._named_secrets(conn, spec):
            dom = await self._call(f"defining VM {spec.name}", conn.defineXML, xml)
        self._known[str(spec.id)] = meta
        log.info("VM defined", extra={"vm": spec.name, "vm_id": str(spec.id)})
        return await self._report(dom)

    @contextlib.asynccontextmanager
    async def _named_secrets(self, conn: libvirt.virConnect, spec: VmSpec | None
                             ) -> AsyncIterator[None]:
        """The iSCSI CHAP secrets `spec`'s disks name, defined, and kept from pruning while
        the block makes the domain that names them. Only defining them takes the lock, so
        VMs start side by side: a start made under it made a node's starts take turns
        (ten at once took ten times one)."""
        credentials = libvirt_secrets.iscsi_credentials(spec) if spec is not None else {}
        if spec is None or not credentials:
            yield
            return
        async with self._secrets_lock:
            await self._call(f"defining the iSCSI secrets of VM {spec.name}",
                             libvirt_secrets.ensure, conn, credentials)
            self._starting[spec.id] = frozenset(credentials)
        try:
            yield
        finally:
            self._starting.pop(spec.id, None)

    async def prepare_incoming(self, vm_id: uuid.UUID,
                               credentials: dict[str, ChapAuth]) -> None:
        """A migration's destination, before the VM comes: the iSCSI secrets its disks
        name, kept until it arrives, `abandon_incoming`, or `INCOMING_KEEP_S` (the secrets
        of earlier preparations that lapsed go now)."""
        conn = self.connection.get()
        async with self._secrets_lock:
            self._incoming[vm_id] = (frozenset(credentials),
                                     self.monotonic() + INCOMING_KEEP_S)
            if credentials:
                await self._call(f"defining the iSCSI secrets of incoming VM {vm_id}",
                                 libvirt_secrets.ensure, conn, credentials)
        log.info("incoming VM prepared", extra={"vm_id": str(vm_id)})
        await self._prune_secrets()

    async def abandon_incoming(self, vm_id: uuid.UUID) -> None:
        """The VM will not come (its migration failed): its secrets go unless a VM here
        names them."""
        self._incoming.pop(vm_id, None)
        await self._prune_secrets()

    async def _prune_secrets(self) -> None:
        """Remove the iSCSI secrets no VM here needs any more; a failure only logs (the
        next stop tries again)."""
        async with self._secrets_lock:
            now = self.monotonic()
            for vm_id in [v for v, (_, lapses) in self._incoming.items() if lapses <= now]:
                log.warning("VM %s was prepared for but never came: its secrets go",
                            vm_id)
                del self._incoming[vm_id]
            keep = frozenset[str]().union(*(usages for usages, _ in self._incoming.values()),
                                          *self._starting.values())
            try:
                removed = await self.calls.run(libvirt_secrets.prune, self.connection.get(),
                                               keep)
            except (libvirt.libvirtError, NodeFailure) as exc:
                log.warning("cannot remove unused iSCSI secrets: %s", exc)
                return
        if removed:
            log.info("unused iSCSI secrets removed", extra={"count": len(removed)})

    async def start(self, vm_id: uuid.UUID, spec: VmSpec | None, *, paused: bool,
                    job: str | None, restore_from: Path | None = None,
                    restore_as_spec: bool = False) -> VmStatusReport:
        conn = self.connection.get()
        flags = libvirt.VIR_DOMAIN_START_PAUSED if paused else 0
        existing = await self._find(vm_id)
        if existing is not None and await self._call("reading state", existing.isActive):
            raise invalid_state(f"VM {existing.name()} is already running")
        if restore_from is not None:
            xml = None
            if restore_as_spec and spec is not None:
                # A snapshot's state: its disks are the volumes of now (`spec`), not the
                # ones it was saved with (libvirt checks the rest is the same machine).
                prepare_console_log(spec)
                meta = OvertMetadata(spec.id, spec.spec_version, job)
                xml = domain_xml(spec, self.virt_mode, meta,
                                 config_drive=self._write_drive(spec),
                                 ovs_bridges=await _ovs_bridges(spec.nics))
                self._known[str(spec.id)] = meta
            async with self._named_secrets(conn, spec):  # its disks name them as before
                return await self._restore(vm_id, restore_from, paused=paused, xml=xml)
        if spec is None:
            if existing is None:
                raise NodeFailure(ErrorCode.NO_SUCH_VM, f"no VM with id {vm_id} is defined on "
                                  "this node; send vm.start with the VM's spec")
            dom = existing
            await self._call(f"starting VM {dom.name()}", dom.createWithFlags, flags)
        else:
            if spec.id != vm_id:
                raise bad_request(f"vm.start for {vm_id} carries the spec of VM {spec.id}")
            prepare_console_log(spec)
            meta = OvertMetadata(spec.id, spec.spec_version, job)
            xml = domain_xml(spec, self.virt_mode, meta, config_drive=self._write_drive(spec),
                             ovs_bridges=await _ovs_bridges(spec.nics))
            self._known[str(spec.id)] = meta
            async with self._named_secrets(conn, spec):
                if existing is not None:  # a defined VM: start it with the new spec
                    dom = await self._call(f"redefining VM {spec.name}", conn.defineXML, xml)
                    await self._call(f"starting VM {spec.name}", dom.createWithFlags, flags)
                else:
                    dom = await self._call(f"starting VM {spec.name}", conn.createXML, xml,
                                           flags)
        log.info("VM started", extra={"vm": dom.name(), "vm_id": str(vm_id)})
        return await self._report(dom)

    def _write_drive(self, spec: VmSpec) -> Path | None:
        """The VM's cloud-init drive for this run (none: an older run's is removed)."""
        if spec.config_drive is None:
            self.config_drives.remove(spec.id)
            return None
        return self.config_drives.write(spec.id, spec.config_drive)

    async def shutdown(self, vm_id: uuid.UUID, *, timeout_s: float,
                       force: bool) -> VmStatusReport:
        dom = await self._domain(vm_id)
        name = dom.name()
        deadline = time.monotonic() + timeout_s
        next_press = 0.0
        while time.monotonic() < deadline:
            if not await self._active(dom):
                log.info("VM powered off", extra={"vm": name, "vm_id": str(vm_id)})
                return await self._report_after_stop(vm_id, name)
            if time.monotonic() >= next_press:
                await self._press_power_button(dom)
                next_press = time.monotonic() + ACPI_RETRY_S
            await asyncio.sleep(POLL_S)
        if not force:
            raise NodeFailure(ErrorCode.TIMEOUT, f"VM {name} did not power off within "
                              f"{timeout_s:g} s of an ACPI shutdown; destroy it or wait longer")
        log.warning("VM ignored the ACPI shutdown for %g s; destroying it", timeout_s,
                    extra={"vm": name, "vm_id": str(vm_id)})
        return await self.destroy(vm_id)

    async def _press_power_button(self, dom: libvirt.virDomain) -> None:
        try:
            await self.calls.run(dom.shutdownFlags, libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
        except libvirt.libvirtError as exc:
            if await self._active(dom):
                raise node_failure(exc, f"shutting down VM {dom.name()}") from None

    async def destroy(self, vm_id: uuid.UUID) -> VmStatusReport:
        dom = await self._domain(vm_id)
        name = dom.name()
        if await self._active(dom):
            try:
                await self.calls.run(dom.destroy)
            except libvirt.libvirtError as exc:
                if await self._active(dom):
                    raise node_failure(exc, f"destroying VM {name}") from None
            log.info("VM destroyed", extra={"vm": name, "vm_id": str(vm_id)})
        return await self._report_after_stop(vm_id, name)

    async def migrate(self, vm_id: uuid.UUID, destination_uri: str, *,
                      migration_uri: str | None, display_address: str | None,
                      timeout_s: float, policy: MigrationPolicy) -> VmMigrated:
        """Live migration managed from here (`OutgoingMigrations.run`); the figures are the
        destination's completed job statistics."""
        dom = await self._domain(vm_id)
        name = dom.name()
        if not await self._active(dom):
            raise invalid_state(f"VM {name} is not running; only a running VM migrates")
        outcome = await self.outgoing.run(
            dom, vm_id, destination_uri, migration_uri=migration_uri,
            display_address=display_address, timeout_s=timeout_s, policy=policy)
        await self._prune_secrets()  # the VM has left: its secrets, unless another needs them
        log.info("VM migrated", extra={"vm": name, "vm_id": str(vm_id),
                                       "destination": destination_uri,
                                       "total_ms": outcome.total_ms,
                                       "downtime_ms": outcome.downtime_ms})
        return VmMigrated(vm_id=vm_id, name=name, state=VmState.GONE, reason="migrated",
                          migration=outcome)

    async def migration_progress(self, vm_id: uuid.UUID) -> MigrationProgress:
        """The VM's outgoing migration job as libvirt reports it now (inactive once the VM
        has left: its reading may come just after the handover)."""
        dom = await self._find(vm_id)
        if dom is None:
            return MigrationProgress(active=False)
        return await self.outgoing.progress(dom, vm_id)

    async def cancel_migration(self, vm_id: uuid.UUID) -> VmStatusReport:
        """Abort the VM's migration job (the `migrate` waiting on it then fails), or the
        migration still waiting for its turn."""
        dom = await self._domain(vm_id)
        if not self.outgoing.cancel_waiting(vm_id):
            await self._call(f"cancelling the migration of VM {dom.name()}", dom.abortJob)
        log.info("VM migration cancelled", extra={"vm": dom.name(), "vm_id": str(vm_id)})
        return await self._report(dom)

    async def save(self, vm_id: uuid.UUID, path: Path) -> VmStatusReport:
        dom = await self._domain(vm_id)
        name = dom.name()
        if not await self._active(dom):
            raise invalid_state(f"VM {name} is not running; only a running VM can be suspended")
        path.parent.mkdir(parents=True, exist_ok=True)
        await self._call(f"suspending VM {name} to {path}", dom.save, str(path))
        log.info("VM suspended to disk", extra={"vm": name, "vm_id": str(vm_id)})
        return VmStatusReport(vm_id=vm_id, name=name, state=VmState.SUSPENDED,
                              reason="saved to disk")

    async def _restore(self, vm_id: uuid.UUID, image: Path, *, paused: bool,
                       xml: str | None = None) -> VmStatusReport:
        if not await asyncio.to_thread(image.is_file):
            raise NodeFailure(ErrorCode.IMAGE_MISSING,
                              f"the saved memory image {image} of VM {vm_id} does not exist")
        conn = self.connection.get()
        flags = libvirt.VIR_DOMAIN_SAVE_PAUSED if paused else 0
        await self._call(f"resuming VM {vm_id} from {image}", conn.restoreFlags, str(image),
                         xml, flags)
        await asyncio.to_thread(image.unlink, missing_ok=True)
        log.info("VM resumed from disk", extra={"vm_id": str(vm_id)})
        return await self._report(await self._domain(vm_id))

    async def reboot(self, vm_id: uuid.UUID) -> VmStatusReport:
        dom = await self._domain(vm_id)
        await self._call(f"rebooting VM {dom.name()}", dom.reboot,
                         libvirt.VIR_DOMAIN_REBOOT_ACPI_POWER_BTN)
        log.info("VM reboot requested", extra={"vm": dom.name(), "vm_id": str(vm_id)})
        return await self._report(dom)

    async def pause(self, vm_id: uuid.UUID) -> VmStatusReport:
        dom = await self._domain(vm_id)
        await self._call(f"pausing VM {dom.name()}", dom.suspend)
        log.info("VM paused", extra={"vm": dom.name(), "vm_id": str(vm_id)})
        return await self._report(dom)

    async def resume(self, vm_id: uuid.UUID) -> VmStatusReport:
        dom = await self._domain(vm_id)
        await self._call(f"resuming VM {dom.name()}", dom.resume)
        log.info("VM resumed", extra={"vm": dom.name(), "vm_id": str(vm_id)})
        return await self._report(dom)

    async def undefine(self, vm_id: uuid.UUID) -> VmStatusReport:
        dom = await self._domain(vm_id)
        name = dom.name()
        if await self._active(dom):
            raise invalid_state(f"VM {name} is running; stop it before undefining it")
        await self._call(f"undefining VM {name}", dom.undefineFlags,
                         libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                         | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        log.info("VM undefined", extra={"vm": name, "vm_id": str(vm_id)})
        return await self._report_after_stop(vm_id, name)

    async def set_ticket(self, vm_id: uuid.UUID, password: str, expiry_s: int) -> VmTicket:
        dom = await self._domain(vm_id)
        live = parse_libvirt_xml(await self._call("reading the VM's XML", dom.XMLDesc, 0))
        current = live.find("devices/graphics[@type='vnc']")
        if current is None:
            raise invalid_state(f"VM {dom.name()} has no VNC console")
        expires = time.time() + expiry_s
        # The live device with only its password changed: libvirt refuses other changes.
        current.set("passwd", password)
        current.set("passwdValidTo",
                    dt.datetime.fromtimestamp(expires, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        port = int(current.get("port", "-1"))
        await self._call(f"setting the console ticket of VM {dom.name()}", dom.updateDeviceFlags,
                         ET.tostring(current, encoding="unicode"), libvirt.VIR_DOMAIN_AFFECT_LIVE)
        log.info("console ticket set", extra={"vm": dom.name(), "vm_id": str(vm_id)})
        return VmTicket(vnc_port=port, expires_at=expires)

    # -- NICs of a running VM ----------------------------------------------------------------

    async def plug_nic(self, vm_id: uuid.UUID, nic: NicSpec) -> VmStatusReport:
        dom = await self._domain(vm_id)
        await self._nics.plug(dom, nic)
        return await self._report(dom)

    async def unplug_nic(self, vm_id: uuid.UUID, nic: NicSpec) -> VmStatusReport:
        dom = await self._domain(vm_id)
        await self._nics.unplug(dom, nic)
        return await self._report(dom)

    async def set_nic_link(self, vm_id: uuid.UUID, nic: NicSpec) -> VmStatusReport:
        dom = await self._domain(vm_id)
        await self._nics.set_link(dom, nic)
        return await self._report(dom)

    async def change_cdrom(self, vm_id: uuid.UUID, cdrom: CdromSpec) -> VmStatusReport:
        dom = await self._domain(vm_id)
        await self._cdrom.change(dom, cdrom)
        return await self._report(dom)

    # -- disks of a running VM ---------------------------------------------------------------

    async def disk_snapshot(self, vm_id: uuid.UUID, disks: Sequence[DiskOverlay]) -> None:
        await self._disks.snapshot(await self._domain(vm_id), disks)

    async def memory_snapshot(self, vm_id: uuid.UUID, disks: Sequence[DiskOverlay],
                              memory: Path, metadata: Path) -> MemorySaved:
        dom = await self._domain(vm_id)
        saved = await self._disks.snapshot(dom, disks, memory)
        if saved.pause_ms is not None or not await asyncio.to_thread(metadata.exists):
            # The domain's XML as the state holds it (oVirt's memory metadata volume).
            xml = await self._call("reading the saved state's XML",
                                   self.connection.get().saveImageGetXMLDesc, str(memory), 0)
            await asyncio.to_thread(metadata.write_text, xml)
        return saved

    async def block_commit(self, vm_id: uuid.UUID, disk: str, top: str, base: str, *,
                           timeout_s: float) -> None:
        await self._disks.commit(await self._domain(vm_id), disk, top, base, timeout_s)

    async def block_copy(self, vm_id: uuid.UUID, disk_id: uuid.UUID, destination: DiskSource,
                         fmt: DiskFormat, action: str) -> BlockCopyState:
        dom = await self._domain(vm_id)
        if action == "start":
            if isinstance(destination, IscsiSource) and destination.chap is not None:
                async with self._secrets_lock:  # the mirror's LUN asks for CHAP too
                    await self._call("defining the iSCSI secret of a block copy",
                                     libvirt_secrets.ensure, self.connection.get(),
                                     {secret_id(destination.target): destination.chap})
            return await self._copies.start(dom, disk_id, destination, fmt)
        if action == "pivot":
            state = await self._copies.pivot(dom, disk_id, destination)
        elif action == "abort":
            state = await self._copies.abort(dom, disk_id, destination)
        else:
            raise bad_request(f"a block copy has no action {action!r}")
        await self._prune_secrets()  # the volume left behind may have named one
        return state

    async def block_copy_state(self, vm_id: uuid.UUID, disk_id: uuid.UUID,
                               destination: DiskSource) -> BlockCopyState:
        return await self._copies.state(await self._domain(vm_id), disk_id, destination)

    # -- events -------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[HypervisorEvent]:
        while True:
            raw = await self.connection.events.get()
            if isinstance(raw, Reconnected):
                await self.list_vms()
                yield HypervisorReconnected()
                continue
            if is_probe(raw.name):
                continue
            yield VmChanged(await self._report_for_event(raw),
                            event_detail(raw.event, raw.detail))

    async def _report_for_event(self, raw: RawDomainEvent) -> VmStatusReport:
        vm_id = uuid.UUID(raw.domain_uuid)
        now: VmStatusReport | None = None
        try:
            dom = await self._find(vm_id)
            if dom is not None:
                now = await self._report(dom)
        except NodeFailure:
            pass  # gone meanwhile, or libvirtd went away: the event says enough
        report = now or self._gone(vm_id, raw.name)
        state = state_after_event(raw.event, raw.detail, now.state if now else None)
        self._incoming.pop(vm_id, None)  # an incoming VM's domain names its secrets now
        if state in (VmState.SHUTOFF, VmState.GONE, VmState.CRASHED):
            if event_detail(raw.event, raw.detail) != "stopped/migrated":
                self.config_drives.remove(vm_id)  # the run it was made for is over
            await self._prune_secrets()
        if state is report.state:
            return report
        return report.model_copy(update={"state": state,
                                         "reason": event_detail(raw.event, raw.detail)})

    # -- helpers ------------------------------------------------------------------------

    async def _find(self, vm_id: uuid.UUID) -> libvirt.virDomain | None:
        conn = self.connection.get()
        try:
            return await self.calls.run(conn.lookupByUUIDString, str(vm_id))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise node_failure(exc, f"looking up VM {vm_id}") from None

    async def _domain(self, vm_id: uuid.UUID) -> libvirt.virDomain:
        dom = await self._find(vm_id)
        if dom is None:
            raise no_such_vm(vm_id)
        return dom

    async def _active(self, dom: libvirt.virDomain) -> bool:
        try:
            return bool(await self.calls.run(dom.isActive))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise node_failure(exc, f"reading the state of VM {dom.name()}") from None

    async def _report(self, dom: libvirt.virDomain) -> VmStatusReport:
        action = f"reading the state of VM {dom.name()}"
        state, reason = await self._call(action, dom.state)
        xml = await self._call(action, dom.XMLDesc, 0)
        meta = OvertMetadata.parse(xml)
        if meta is not None:
            self._known[dom.UUIDString()] = meta
        mapped, word = vm_state(state, reason)
        return VmStatusReport(vm_id=meta.vm_id if meta else None, name=dom.name(),
                              state=mapped, reason=word,
                              spec_version=meta.spec_version if meta else None,
                              vnc_port=vnc_port(xml) if mapped is not VmState.SHUTOFF else None)

    async def _report_after_stop(self, vm_id: uuid.UUID, name: str) -> VmStatusReport:
        self.config_drives.remove(vm_id)
        await self._prune_secrets()
        dom = await self._find(vm_id)
        return await self._report(dom) if dom is not None else self._gone(vm_id, name)

    def _gone(self, vm_id: uuid.UUID, name: str) -> VmStatusReport:
        meta = self._known.get(str(vm_id))
        return VmStatusReport(vm_id=meta.vm_id if meta else None, name=name, state=VmState.GONE,
                              spec_version=meta.spec_version if meta else None)



def prepare_console_log(spec: VmSpec) -> None:
    """The directory of the VM's serial console log must exist before libvirt opens it."""
    if spec.serial_log:
        directory = Path(spec.serial_log).parent
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)


async def _ovs_bridges(nics: Sequence[NicSpec]) -> frozenset[str]:
    """The untagged NICs' bridges that are OVS bridges on this host (see `ovs_ports`)."""
    return await asyncio.to_thread(ovs_bridges, [n.bridge for n in nics if n.vlan is None])
