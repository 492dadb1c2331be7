"""What the agent calls: keeps the SNMP snapshot current and traps VM state changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import replace
from pathlib import Path

from overt.node.snmp.snapshot import NodeSnapshot, VmRow, write_snapshot
from overt.node.snmp.traps import TrapError, TrapSender
from overt.protocol.host import VmStatusReport

log = logging.getLogger(__name__)


def vm_key(vm_id: uuid.UUID | str | None, name: str) -> str:
    """How the SNMP view tells VMs apart: by id, by name for a domain without one."""
    return str(vm_id) if vm_id else f"name:{name}"


def _key(vm: VmRow) -> str:
    return vm_key(vm.uuid, vm.name)


def row(vm: VmStatusReport, vcpus: int = 0, memory_mib: int = 0) -> VmRow:
    return VmRow(name=vm.name, uuid=str(vm.vm_id) if vm.vm_id else "", state=vm.state.value,
                 vcpus=vcpus, memory_mib=memory_mib)


class SnmpReporter:
    """One node's SNMP view: the snapshot file snmpd's exporter reads, and the traps."""

    def __init__(self, state_file: Path, trap_sender: TrapSender | None = None) -> None:
        self.state_file = state_file
        self.trap_sender = trap_sender
        self.snapshot = NodeSnapshot(host_name="", host_uuid="")
        self._traps: asyncio.Task[None] | None = None  # the last trap queued

    def start(self, host_name: str, host_uuid: uuid.UUID, vms: list[VmRow]) -> None:
        """The node's identity and full state when the agent starts; no traps."""
        self.snapshot = NodeSnapshot(host_name=host_name, host_uuid=str(host_uuid))
        self.publish(vms)

    def publish(self, vms: list[VmRow]) -> None:
        """The full state (at start and after a resync); no traps."""
        self.snapshot = replace(self.snapshot, vms=tuple(vms))
        try:
            write_snapshot(self.state_file, self.snapshot)
        except OSError as exc:  # SNMP is a side view: it never stops the agent
            log.warning("SNMP state not written to %s: %s", self.state_file, exc.strerror)

    async def vm_changed(self, vm: VmRow) -> None:
        """One VM's new state: update the snapshot, then trap if its state changed.

        The trap goes out in the background, after the traps before it, so a slow
        receiver (or a trap target name that takes long to resolve) never holds up the
        agent's events to the engine."""
        rows = {_key(v): v for v in self.snapshot.vms}
        old = rows.pop(_key(vm), None)
        if old is not None:
            vm = replace(vm, vcpus=vm.vcpus or old.vcpus, memory_mib=vm.memory_mib or
                         (old.memory_mib if vm.state == old.state else 0))
        if vm.state != "gone":
            rows[_key(vm)] = vm
        self.publish(list(rows.values()))
        if self.trap_sender is None or (old is not None and old.state == vm.state):
            return
        self._traps = asyncio.create_task(self._send_after(self._traps, vm, self._index(vm)),
                                          name=f"snmp-trap-{vm.name}")

    def refresh_memory(self, memory_mib: dict[str, int]) -> None:
        """Memory of the running VMs by key (id, or name for a domain without one), from the
        agent's stats loop; written only if something changed."""
        vms = [replace(v, memory_mib=memory_mib.get(_key(v), 0)) for v in self.snapshot.vms]
        if vms != list(self.snapshot.vms):
            self.publish(vms)

    async def close(self, within_s: float = 5.0) -> None:
        """Let the traps already queued go out (for at most `within_s`)."""
        if self._traps is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._traps), within_s)

    async def _send_after(self, before: asyncio.Task[None] | None, vm: VmRow,
                          index: int) -> None:
        if before is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await before
        assert self.trap_sender is not None
        try:
            await self.trap_sender.send(vm, index)
        except (TrapError, OSError) as exc:
            log.warning("SNMP trap not sent: %s", exc, extra={"vm": vm.name})

    def _index(self, vm: VmRow) -> int:
        """The VM's row in the table (0 for a VM that has left it)."""
        rows = sorted(self.snapshot.vms, key=lambda v: (v.name, v.uuid))
        for i, v in enumerate(rows, start=1):
            if v.name == vm.name and v.uuid == vm.uuid:
                return i
        return 0
