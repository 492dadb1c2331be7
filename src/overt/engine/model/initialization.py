"""A VM's cloud-init initialization (oVirt's `initialization`), as data with its checks.

Checked before anything is stored or started, so bad input is a 400 and changes nothing.
The root password is a secret: it is kept to render the guest's user-data, but never
shown (`public`), never in a repr, never in an error message.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import struct
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from overt.engine.model.errors import InvalidInput

# oVirt keeps custom scripts in a text column; we bound them as a cloud-init user-data
# size that config drives and the engine's rows carry comfortably.
MAX_CUSTOM_SCRIPT_BYTES = 64 * 1024
MAX_SSH_KEYS_BYTES = 64 * 1024
MAX_PASSWORD_CHARS = 1024
MAX_NIC_CONFIGURATIONS = 64

SSH_KEY_TYPES = frozenset({
    "ssh-rsa", "ssh-dss", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
})
# How many SSH wire strings follow the type name in each kind of key's blob.
_SSH_KEY_FIELDS = {
    "ssh-rsa": 2, "ssh-dss": 4, "ssh-ed25519": 1, "ecdsa-sha2-nistp256": 2,
    "ecdsa-sha2-nistp384": 2, "ecdsa-sha2-nistp521": 2, "sk-ssh-ed25519@openssh.com": 2,
    "sk-ecdsa-sha2-nistp256@openssh.com": 3,
}
_LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_TIMEZONE_RE = re.compile(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+){0,3}$")
_NIC_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$")


class NicBootProtocol(StrEnum):
    """How a guest NIC takes its address (oVirt's BootProtocol, the IPv4 part)."""

    DHCP = "dhcp"
    STATIC = "static"
    NONE = "none"


@dataclass(frozen=True)
class NicConfiguration:
    name: str
    boot_protocol: NicBootProtocol = NicBootProtocol.DHCP
    address: str | None = None
    netmask: str | None = None
    gateway: str | None = None
    on_boot: bool = True


@dataclass(frozen=True)
class Initialization:
    """What cloud-init does to the guest at its first boot (every field optional)."""

    host_name: str | None = None
    user_name: str | None = None
    root_password: str | None = field(default=None, repr=False)
    authorized_ssh_keys: str | None = None
    dns_servers: str | None = None  # space-separated, as oVirt has them
    dns_search: str | None = None  # space-separated
    nic_configurations: tuple[NicConfiguration, ...] = ()
    custom_script: str | None = None
    timezone: str | None = None

    @property
    def login(self) -> str:
        """The user the password and keys are for (oVirt's default: root)."""
        return self.user_name or "root"

    def ssh_keys(self) -> list[str]:
        return [line.strip() for line in (self.authorized_ssh_keys or "").splitlines()
                if line.strip()]

    def public(self) -> Initialization:
        """What the API shows: everything but the root password (oVirt never returns it)."""
        return replace(self, root_password=None)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["nic_configurations"] = [
            {**nic, "boot_protocol": str(nic["boot_protocol"])}
            for nic in data["nic_configurations"]]
        return {key: value for key, value in data.items() if value not in (None, [])}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Initialization:
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["nic_configurations"] = tuple(
            NicConfiguration(**{**nic, "boot_protocol": NicBootProtocol(nic["boot_protocol"])})
            for nic in data.get("nic_configurations", []))
        return cls(**values)


def check_initialization(init: Initialization) -> Initialization:
    """Refuse what cloud-init could not apply; return `init` unchanged when it is sound."""
    if init.host_name is not None:
        check_host_name(init.host_name, "initialization.host_name")
    if init.user_name is not None and not _USER_RE.match(init.user_name):
        raise InvalidInput(
            f"initialization.user_name {init.user_name!r} is not a valid user name: use up to "
            "32 lower-case letters, digits, '_' or '-', starting with a letter or '_'")
    if init.root_password is not None and not 0 < len(init.root_password) <= MAX_PASSWORD_CHARS:
        raise InvalidInput(f"initialization.root_password must have 1 to {MAX_PASSWORD_CHARS} "
                           "characters")
    if init.authorized_ssh_keys is not None:
        if len(init.authorized_ssh_keys.encode()) > MAX_SSH_KEYS_BYTES:
            raise InvalidInput("initialization.authorized_ssh_keys is larger than 64 KiB")
        for number, key in enumerate(init.ssh_keys(), start=1):
            check_ssh_key(key, number)
    for server in (init.dns_servers or "").split():
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise InvalidInput(f"initialization.dns_servers: {server!r} is not an IP "
                               "address") from None
    for domain in (init.dns_search or "").split():
        check_host_name(domain, "initialization.dns_search")
    if init.custom_script is not None and \
            len(init.custom_script.encode()) > MAX_CUSTOM_SCRIPT_BYTES:
        raise InvalidInput(
            f"initialization.custom_script has {len(init.custom_script.encode())} bytes; "
            f"the limit is {MAX_CUSTOM_SCRIPT_BYTES} bytes (64 KiB)")
    if init.timezone is not None and not _TIMEZONE_RE.match(init.timezone):
        raise InvalidInput(f"initialization.timezone {init.timezone!r} is not a time zone name "
                           "like Europe/Paris or Etc/UTC")
    if len(init.nic_configurations) > MAX_NIC_CONFIGURATIONS:
        raise InvalidInput(f"initialization.nic_configurations has more than "
                           f"{MAX_NIC_CONFIGURATIONS} NICs")
    names = [nic.name for nic in init.nic_configurations]
    if len(set(names)) != len(names):
        raise InvalidInput("initialization.nic_configurations names a NIC twice")
    for nic in init.nic_configurations:
        _check_nic(nic)
    return init


def check_host_name(name: str, what: str) -> None:
    """An RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens."""
    labels = name.split(".")
    if not 0 < len(name) <= 253 or not all(_LABEL_RE.match(label) for label in labels):
        raise InvalidInput(
            f"{what} {name!r} is not a valid host name (RFC 1123): use labels of 1-63 letters, "
            "digits or inner '-', joined by '.', 253 characters at most")


def check_ssh_key(key: str, number: int = 1) -> None:
    """An OpenSSH public key line: type, base64 blob naming the same type, comment.
    The message names the key by its position only: keys are not echoed back."""
    parts = key.split(None, 2)
    problem = None
    if len(parts) < 2 or parts[0] not in SSH_KEY_TYPES:
        problem = "it does not start with a known key type (ssh-ed25519, ssh-rsa, ecdsa-...)"
    else:
        try:
            blob = base64.b64decode(parts[1], validate=True)
        except (binascii.Error, ValueError):
            problem = "its key data is not valid base64"
        else:
            problem = _ssh_blob_problem(parts[0], blob)
    if problem is not None:
        raise InvalidInput(f"initialization.authorized_ssh_keys: key {number} is not an "
                           f"OpenSSH public key: {problem}")


def _ssh_blob_problem(kind: str, blob: bytes) -> str | None:
    """Whether the key data is whole: the type's name, then exactly the fields a key of
    that type has (a truncated or padded key is refused, not handed to the guest)."""
    fields: list[bytes] = []
    offset = 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            return "its key data is truncated"
        (length,) = struct.unpack(">I", blob[offset:offset + 4])
        offset += 4
        if offset + length > len(blob):
            return "its key data is truncated"
        fields.append(blob[offset:offset + length])
        offset += length
    if not fields or fields[0] != kind.encode():
        return "its key data does not hold a key of the type it names"
    if len(fields) != 1 + _SSH_KEY_FIELDS[kind] or not all(fields[1:]):
        return "its key data does not hold a whole key of that type"
    if "ed25519" in kind and len(fields[1]) != 32:
        return "its key data does not hold a whole key of that type"
    return None


def _check_nic(nic: NicConfiguration) -> None:
    what = f"initialization.nic_configurations {nic.name!r}"
    if not _NIC_NAME_RE.match(nic.name):
        raise InvalidInput(f"{what}: the NIC name must be an interface name like eth0")
    if nic.boot_protocol is NicBootProtocol.STATIC:
        if nic.address is None or nic.netmask is None:
            raise InvalidInput(f"{what}: a static NIC needs ip.address and ip.netmask")
        try:
            ipaddress.IPv4Interface(f"{nic.address}/{nic.netmask}")
            if nic.gateway is not None:
                ipaddress.IPv4Address(nic.gateway)
        except ValueError as exc:
            raise InvalidInput(f"{what}: {exc}") from None


def replaced_initialization(stored: dict[str, Any] | None,
                            new: Initialization) -> dict[str, Any] | None:
    """A VM's or template's new initialization. A client sending back what it read has no
    root password to send (it is never shown): the stored one stays unless a new one is
    given. An empty `<initialization/>` removes it, password included."""
    if new == Initialization():
        return None
    if new.root_password is None and stored:
        kept = Initialization.from_json(stored).root_password
        return {**new.to_json(), **({"root_password": kept} if kept else {})}
    return new.to_json()
