"""Sending one SNMP trap (v2c or v3 authPriv) with net-snmp's `snmptrap`.

Communities and passphrases are secrets: they reach `snmptrap` through a private
snmp.conf (mode 0600, in a directory of its own, removed afterwards), never its command
line where any local user could read them in the process list, and an error message
never holds them.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from overt.snmp.oids import oid_text
from overt.snmp.targets import peer

# snmptrap's varbind types: i INTEGER, u Unsigned32, s STRING, o OID, t TimeTicks, ...
VarBind = tuple[tuple[int, ...], str, str]
_ENGINE_ID = re.compile(r"^(0x)?([0-9A-Fa-f]{2}){5,32}$")
AUTH_PROTOCOLS = ("SHA",)
PRIV_PROTOCOLS = ("AES",)


class TrapError(Exception):
    """A trap could not be sent (its text never holds a secret)."""


@dataclass(frozen=True)
class V2c:
    community: str = field(repr=False)

    def conf(self) -> str:
        return f"defVersion 2c\ndefCommunity {self.community}\n"

    def args(self) -> list[str]:
        return ["-v", "2c"]

    def secrets(self) -> list[str]:
        return [self.community]


@dataclass(frozen=True)
class V3:
    """An SNMPv3 user at authPriv (SHA, AES). Traps are sent with the sender's
    `engine_id` (hex), which the receiver's `createUser -e` names."""

    user: str
    auth_passphrase: str = field(repr=False)
    priv_passphrase: str = field(repr=False)
    engine_id: str = ""

    def conf(self) -> str:
        return (f"defVersion 3\ndefSecurityName {self.user}\ndefSecurityLevel authPriv\n"
                f"defAuthType SHA\ndefPrivType AES\n"
                f"defAuthPassphrase {self.auth_passphrase}\n"
                f"defPrivPassphrase {self.priv_passphrase}\n")

    def args(self) -> list[str]:
        return ["-v", "3", "-e", self.engine_id] if self.engine_id else ["-v", "3"]

    def secrets(self) -> list[str]:
        return [self.auth_passphrase, self.priv_passphrase]


Credentials = V2c | V3


def check_engine_id(text: str) -> str:
    """An SNMP engine id as net-snmp takes it (0x + 5-32 bytes in hex)."""
    if not _ENGINE_ID.match(text):
        raise ValueError(f"SNMP engine id {text!r} is not 5-32 bytes in hex (0x8000...)")
    return text if text.startswith("0x") else "0x" + text


def check_secret(what: str, text: str, *, min_length: int = 1) -> None:
    """A community or passphrase snmp.conf can carry (one line, no spaces)."""
    if len(text) < min_length:
        raise ValueError(f"the {what} must have at least {min_length} characters")
    if any(c.isspace() for c in text) or len(text) > 255:
        raise ValueError(f"the {what} must be at most 255 characters without spaces")


def command(host: str, port: int, credentials: Credentials, trap_oid: tuple[int, ...],
            varbinds: list[VarBind]) -> list[str]:
    """snmptrap's command line: no secret in it."""
    line = ["snmptrap", *credentials.args(), "-Ln", peer(host, port), "", oid_text(trap_oid)]
    for oid, kind, value in varbinds:
        line += [oid_text(oid), kind, value]
    return line


async def send_trap(host: str, port: int, credentials: Credentials,
                    trap_oid: tuple[int, ...], varbinds: list[VarBind], *,
                    timeout_s: float = 10.0, hide: tuple[str, ...] = ()) -> None:
    """Send the trap; TrapError if snmptrap fails (a trap is UDP: sent is not received)."""
    with tempfile.TemporaryDirectory(prefix="overt-snmptrap-") as conf_dir:
        conf = Path(conf_dir) / "snmp.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(credentials.conf())
        env = {k: v for k, v in os.environ.items() if k not in hide}
        env.update(SNMPCONFPATH=conf_dir, MIBS="", SNMP_PERSISTENT_DIR=conf_dir)
        proc = await asyncio.create_subprocess_exec(
            *command(host, port, credentials, trap_oid, varbinds), env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise TrapError(f"snmptrap to {host}:{port} timed out") from None
    if proc.returncode != 0:
        message = err.decode(errors="replace")
        for secret in credentials.secrets():
            if secret:
                message = message.replace(secret, "***")
        raise TrapError(f"snmptrap to {host}:{port} failed: {message.strip()}")
