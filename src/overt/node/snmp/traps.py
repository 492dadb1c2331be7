"""SNMPv2c traps on VM state changes, sent with net-snmp's `snmptrap`.

The community is a secret: it comes from OVERT_SNMP_COMMUNITY or a file, never a default,
and reaches `snmptrap` through a private snmp.conf (`defCommunity`), not its command line
where any local user could read it in the process list.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from overt.node.snmp.mib import (
    COL_NAME,
    COL_STATE,
    COL_UUID,
    UNKNOWN_STATE,
    VM_ENTRY,
    VM_STATE_CHANGE,
    VM_STATES,
    oid_text,
)
from overt.node.snmp.snapshot import VmRow

COMMUNITY_ENV = "OVERT_SNMP_COMMUNITY"


class TrapError(Exception):
    """A trap could not be sent (its text never holds the community)."""


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


def parse_target(text: str) -> tuple[str, int]:
    """`HOST[:PORT]` (an IPv6 address in brackets with a port) -> (host, port); port 162
    by default. HOST is an IP address or a DNS name."""
    text = text.strip()
    host, port = text, "162"
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"bad SNMP trap target {text!r} (HOST[:PORT])")
        port = rest[1:] if rest else port
        if not _is_ip(host, 6):
            raise ValueError(f"bad SNMP trap target {text!r}: {host!r} is not an IPv6 address")
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif ":" in text and not _is_ip(text, 6):
        raise ValueError(f"bad SNMP trap target {text!r} (HOST[:PORT])")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad SNMP trap target {text!r}: the port must be 1-65535")
    is_name = _DNS_NAME.fullmatch(host) and not host.rsplit(".", 1)[-1].isdigit()
    if not (_is_ip(host, 4) or _is_ip(host, 6) or is_name):
        raise ValueError(f"bad SNMP trap target {text!r}: {host!r} is not an address or name")
    return host, int(port)


_DNS_NAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                       r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


@dataclass(frozen=True)
class TrapSender:
    """Sends overtVmStateChange to one trap receiver."""

    target: str  # HOST[:PORT]
    community: str
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        parse_target(self.target)

    def command(self, vm: VmRow, index: int) -> list[str]:
        host, port = parse_target(self.target)
        peer = f"udp6:[{host}]:{port}" if ":" in host else f"udp:{host}:{port}"
        return [
            "snmptrap", "-v", "2c", "-Ln", peer, "", oid_text(VM_STATE_CHANGE),
            oid_text((*VM_ENTRY, COL_NAME, index)), "s", vm.name,
            oid_text((*VM_ENTRY, COL_UUID, index)), "s", vm.uuid,
            oid_text((*VM_ENTRY, COL_STATE, index)), "i",
            str(VM_STATES.get(vm.state, UNKNOWN_STATE)),
        ]

    async def send(self, vm: VmRow, index: int) -> None:
        with tempfile.TemporaryDirectory(prefix="overt-snmptrap-") as conf_dir:
            conf = Path(conf_dir) / "snmp.conf"
            conf.write_text(f"defCommunity {self.community}\n", encoding="utf-8")
            conf.chmod(0o600)
            env = {**os.environ, "SNMPCONFPATH": conf_dir, "MIBS": ""}
            env.pop(COMMUNITY_ENV, None)
            proc = await asyncio.create_subprocess_exec(
                *self.command(vm, index), env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            try:
                _, err = await asyncio.wait_for(proc.communicate(), self.timeout_s)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise TrapError(f"snmptrap to {self.target} timed out") from None
        if proc.returncode != 0:
            message = err.decode(errors="replace").replace(self.community, "***").strip()
            raise TrapError(f"snmptrap to {self.target} failed: {message}")
