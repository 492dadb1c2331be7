"""What the agent calls: keeps the SNMP snapshot current and traps VM state changes."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from pathlib import Path

from overt.node.snmp.snapshot import NodeSnapshot, VmRow, write_snapshot
from overt.node.snmp.traps import TrapError, TrapSender
from overt.protocol.host import VmStatusReport

log = logging.getLogger(__name__)


def row(vm: VmStatusReport, vcpus: int = 0, memory_mib: int = 0) -> VmRow:
    return VmRow(name=vm.name, uuid=str(vm.vm_id) if vm.vm_id else "", state=vm.state.value,
                 vcpus=vcpus, memory_mib=memory_mib)


class SnmpReporter:
    """One node's SNMP view: the snapshot file snmpd's exporter reads, and the traps."""

    def __init__(self, state_file: Path, trap_sender: TrapSender | None = None) -> None:
        self.state_file = state_file
        self.trap_sender = trap_sender
        self.snapshot = NodeSnapshot(host_name="", host_uuid="")

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
        """One VM's new state: update the snapshot, then trap if its state changed."""
        key = (vm.uuid, vm.name) if vm.uuid else ("", vm.name)
        previous = {(v.uuid, v.name) if v.uuid else ("", v.name): v for v in self.snapshot.vms}
        old = previous.get(key)
        if old is not None:
            vm = replace(vm, vcpus=vm.vcpus or old.vcpus, memory_mib=vm.memory_mib or
                         (old.memory_mib if vm.state == old.state else 0))
        rows = [v for k, v in previous.items() if k != key]
        if vm.state != "gone":
            rows.append(vm)
        self.publish(rows)
        if self.trap_sender is None or (old is not None and old.state == vm.state):
            return
        index = self._index(vm)
        try:
            await self.trap_sender.send(vm, index)
        except TrapError as exc:
            log.warning("SNMP trap not sent: %s", exc, extra={"vm": vm.name})

    def _index(self, vm: VmRow) -> int:
        """The VM's row in the table (0 for a VM that has left it)."""
        rows = sorted(self.snapshot.vms, key=lambda v: (v.name, v.uuid))
        for i, v in enumerate(rows, start=1):
            if v.name == vm.name and v.uuid == vm.uuid:
                return i
        return 0
