"""SNMPv2c traps on VM state changes, sent with net-snmp's `snmptrap` (`overt.snmp.trap`).

The community is a secret: it comes from OVERT_SNMP_COMMUNITY or a file, never a default,
and reaches `snmptrap` through a private snmp.conf (`defCommunity`), not its command line
where any local user could read it in the process list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from overt.node.snmp.mib import (
    COL_NAME,
    COL_STATE,
    COL_UUID,
    UNKNOWN_STATE,
    VM_ENTRY,
    VM_STATE_CHANGE,
    VM_STATES,
)
from overt.node.snmp.snapshot import VmRow
from overt.snmp.targets import parse_target
from overt.snmp.trap import TrapError, V2c, VarBind, command, send_trap

__all__ = ["COMMUNITY_ENV", "TrapError", "TrapSender", "load_community", "parse_target"]

COMMUNITY_ENV = "OVERT_SNMP_COMMUNITY"


def load_community(file: Path | None = None) -> str:
    """The community from `file` (first line) or OVERT_SNMP_COMMUNITY; no default."""
    if file is not None:
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise TrapError(f"cannot read the SNMP community file {file}: {exc.strerror}") \
                from None
        community = lines[0].strip() if lines else ""
    else:
        community = os.environ.get(COMMUNITY_ENV, "").strip()
    if not community:
        raise TrapError("no SNMP community: set OVERT_SNMP_COMMUNITY or give a community file")
    if any(c.isspace() for c in community):
        raise TrapError("the SNMP community must not contain spaces")
    return community


@dataclass(frozen=True)
class TrapSender:
    """Sends overtVmStateChange to one trap receiver."""

    target: str  # HOST[:PORT]
    community: str = field(repr=False)
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        parse_target(self.target)

    def varbinds(self, vm: VmRow, index: int) -> list[VarBind]:
        return [
            ((*VM_ENTRY, COL_NAME, index), "s", vm.name),
            ((*VM_ENTRY, COL_UUID, index), "s", vm.uuid),
            ((*VM_ENTRY, COL_STATE, index), "i", str(VM_STATES.get(vm.state, UNKNOWN_STATE))),
        ]

    def command(self, vm: VmRow, index: int) -> list[str]:
        host, port = parse_target(self.target)
        return command(host, port, V2c(self.community), VM_STATE_CHANGE,
                       self.varbinds(vm, index))

    async def send(self, vm: VmRow, index: int) -> None:
        host, port = parse_target(self.target)
        await send_trap(host, port, V2c(self.community), VM_STATE_CHANGE,
                        self.varbinds(vm, index), timeout_s=self.timeout_s,
                        hide=(COMMUNITY_ENV,))
