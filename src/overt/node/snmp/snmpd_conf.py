"""The node's snmpd configuration: who may read the Overt subtree, and the exporter.

With an SNMPv3 user (authPriv: SHA authentication, AES privacy) the file grants reads to
that user only and carries no community, so SNMPv1/v2c get nothing; without one, a
read-only v2c community. The passphrases come from files or the environment (never the
command line), land only in this file (mode 0600, as snmpd reads it as root) and are never
logged or put in an error message.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from overt.snmp.oids import ENTERPRISE

AUTH_ENV = "OVERT_SNMP_V3_AUTH_PASSPHRASE"
PRIV_ENV = "OVERT_SNMP_V3_PRIV_PASSPHRASE"
MIN_PASSPHRASE = 8  # net-snmp refuses shorter ones
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_COMMUNITY = re.compile(r"^[!-~]{1,64}$")


class SnmpConfigError(ValueError):
    """A user, passphrase or community snmpd cannot take; the message holds no secret."""


@dataclass(frozen=True)
class UsmUser:
    """An SNMPv3 user at authPriv."""

    name: str
    auth: str = field(repr=False)
    priv: str = field(repr=False)


def _passphrase(file: Path | None, env: str, what: str) -> str:
    if file is not None:
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise SnmpConfigError(f"cannot read the SNMPv3 {what} file {file}: "
                                  f"{exc.strerror}") from None
        value = lines[0].strip() if lines else ""
    else:
        value = os.environ.get(env, "").strip()
    if len(value) < MIN_PASSPHRASE:
        raise SnmpConfigError(f"the SNMPv3 {what} passphrase must have at least "
                              f"{MIN_PASSPHRASE} characters (give a file or set {env})")
    if not all("!" <= c <= "~" for c in value) or '"' in value or "\\" in value:
        raise SnmpConfigError(f"the SNMPv3 {what} passphrase must be printable ASCII without "
                              'spaces, quotes (") or backslashes')
    return value


def load_usm_user(name: str, auth_file: Path | None = None,
                  priv_file: Path | None = None) -> UsmUser:
    """The user `name` with its passphrases from the files, else from the environment."""
    if not _USER.match(name):
        raise SnmpConfigError(f"{name!r} is not an SNMPv3 user name (letters, digits, "
                              "_ . -, up to 32)")
    return UsmUser(name, _passphrase(auth_file, AUTH_ENV, "authentication"),
                   _passphrase(priv_file, PRIV_ENV, "privacy"))


def render_snmpd_conf(*, state_file: Path, agent_address: str = "udp:0.0.0.0:161",
                      user: UsmUser | None = None, community: str | None = None,
                      source: str = "default", python: str = sys.executable) -> str:
    """snmpd.conf for a node: v3 `user` (v2c then off) or a v2c `community` from `source`."""
    if user is None and community is None:
        raise SnmpConfigError("give an SNMPv3 user or a v2c community")
    lines = ["# Written by `overt snmp snmpd-conf`; it holds secrets: keep it mode 0600.",
             f"agentAddress {agent_address}"]
    if user is not None:
        lines += [f'createUser {user.name} SHA "{user.auth}" AES "{user.priv}"',
                  f"rouser -s usm {user.name} priv"]
    else:
        assert community is not None
        if not _COMMUNITY.match(community):
            raise SnmpConfigError("the community must be 1-64 printable characters, no spaces")
        lines.append(f"rocommunity {community} {source}")
    subtree = ".".join(str(n) for n in ENTERPRISE)
    lines.append(f"pass_persist .{subtree} {python} -m overt.node.snmp "
                 f"--state-file {state_file}")
    return "\n".join(lines) + "\n"


def write_snmpd_conf(path: Path, text: str) -> None:
    """Replace `path` atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    tmp.chmod(0o600)
    tmp.replace(path)
