"""SNMP traps on VM state changes (v2c, or v3 at authPriv with SHA and AES), sent with
net-snmp's `snmptrap` (`overt.snmp.trap`).

The community and the v3 passphrases are secrets: they come from files or the environment
(OVERT_SNMP_COMMUNITY, OVERT_SNMP_V3_AUTH_PASSPHRASE, OVERT_SNMP_V3_PRIV_PASSPHRASE),
never a default, and reach `snmptrap` through a private snmp.conf, not its command line
where any local user could read them in the process list, nor its environment.
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
from overt.node.snmp.snmpd_conf import AUTH_ENV, PRIV_ENV, SnmpConfigError, load_usm_user
from overt.snmp.targets import parse_target
from overt.snmp.trap import V3, Credentials, TrapError, VarBind, check_engine_id, command, send_trap

__all__ = ["COMMUNITY_ENV", "TrapError", "TrapSender", "default_engine_id", "load_community",
           "load_v3", "parse_target"]

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


def default_engine_id(hostname: str) -> str:
    """The node's SNMP engine id when none is given: net-snmp's enterprise (8072) with the
    host name as text (RFC 3411 format 4), so it stays the same across restarts and a
    receiver's `createUser -e` can name it."""
    text = hostname.encode("utf-8")[:27] or b"overt-node"
    return "0x80001f8804" + text.hex()


def load_v3(user: str, auth_file: Path | None, priv_file: Path | None, engine_id: str
            ) -> V3:
    """The v3 credentials of the node's traps; TrapError (with no secret) if unusable."""
    try:
        usm = load_usm_user(user, auth_file, priv_file)
        return V3(usm.name, usm.auth, usm.priv, check_engine_id(engine_id))
    except (SnmpConfigError, ValueError) as exc:
        raise TrapError(str(exc)) from None


@dataclass(frozen=True)
class TrapSender:
    """Sends overtVmStateChange to one trap receiver."""

    target: str  # HOST[:PORT]
    credentials: Credentials = field(repr=False)
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
        return command(host, port, self.credentials, VM_STATE_CHANGE, self.varbinds(vm, index))

    async def send(self, vm: VmRow, index: int) -> None:
        host, port = parse_target(self.target)
        await send_trap(host, port, self.credentials, VM_STATE_CHANGE,
                        self.varbinds(vm, index), timeout_s=self.timeout_s,
                        hide=(COMMUNITY_ENV, AUTH_ENV, PRIV_ENV))
