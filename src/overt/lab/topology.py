"""What a lab is made of: hosts, networks, addresses and names, derived from a LabSpec.

Pure: nothing here touches the machine, so the layout is unit-tested and the
same spec always gives the same lab.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

DEFAULT_PREFIX = "ovlab"
DEFAULT_ADDRESS_BLOCK = "10.77.0.0/16"
MAX_NODES = 32
STATE_ROOT = Path("/var/lib/overt-lab")
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{1,5}$")
_HOST_UUID_NAMESPACE = uuid.UUID("5f1f6a8e-2b0d-4c4e-9a61-7c3e0f2d9b10")


class LabError(RuntimeError):
    """The lab cannot be built or used as asked; the message says what to do."""


class Net(StrEnum):
    """The lab's three networks, after oVirt's recommended physical layout."""

    MANAGEMENT = "mgmt"
    STORAGE = "stor"
    GUEST = "guest"


class Role(StrEnum):
    NODE = "node"
    STORAGE = "storage"


@dataclass(frozen=True)
class Interface:
    """A host's port on one lab network: a veth pair between the host and a bridge."""

    net: Net
    outer: str  # end in the root namespace, enslaved to the network's bridge
    inner: str  # end inside the host's namespace
    address: ipaddress.IPv4Interface | None


@dataclass(frozen=True)
class Host:
    name: str
    role: Role
    namespace: str
    interfaces: tuple[Interface, ...]
    host_uuid: uuid.UUID

    def address(self, net: Net) -> ipaddress.IPv4Address:
        for iface in self.interfaces:
            if iface.net is net and iface.address is not None:
                return iface.address.ip
        raise LabError(f"{self.name} has no address on the {net.value} network")


@dataclass(frozen=True)
class LabSpec:
    """What the user asked for; everything else follows from it."""

    nodes: int
    prefix: str = DEFAULT_PREFIX
    address_block: str = DEFAULT_ADDRESS_BLOCK

    def validate(self) -> None:
        if not 1 <= self.nodes <= MAX_NODES:
            raise LabError(f"--nodes must be between 1 and {MAX_NODES}, not {self.nodes}")
        if not _PREFIX_RE.match(self.prefix):
            raise LabError(
                f"lab prefix {self.prefix!r} must be 2-6 lowercase letters or digits, "
                "starting with a letter (it prefixes interface names)")
        try:
            block = ipaddress.IPv4Network(self.address_block)
        except ValueError as exc:
            raise LabError(f"address block {self.address_block!r} is not an IPv4 network: {exc}"
                           ) from exc
        if block.prefixlen > 22:
            raise LabError(f"address block {block} is too small: give a /22 or larger")

    def to_json(self) -> dict[str, object]:
        return {"nodes": self.nodes, "prefix": self.prefix, "address_block": self.address_block}


class Topology:
    """The derived layout of a lab: bridges, subnets, hosts, paths."""

    def __init__(self, spec: LabSpec) -> None:
        spec.validate()
        self.spec = spec
        block = ipaddress.IPv4Network(spec.address_block)
        subnets = list(block.subnets(new_prefix=24))
        self.subnets = {Net.MANAGEMENT: subnets[0], Net.STORAGE: subnets[1], Net.GUEST: subnets[2]}
        self.block = block
        self.state_dir = STATE_ROOT / spec.prefix
        self.hosts = (self._storage_host(), *(self._node(i) for i in range(1, spec.nodes + 1)))

    def bridge(self, net: Net) -> str:
        return f"{self.spec.prefix}-{net.value}"

    def gateway(self, net: Net) -> ipaddress.IPv4Interface:
        """The root namespace's address on `net` (management: the engine; guest: the router)."""
        subnet = self.subnets[net]
        return ipaddress.IPv4Interface(f"{subnet.network_address + 1}/{subnet.prefixlen}")

    def engine_address(self) -> ipaddress.IPv4Address:
        return self.gateway(Net.MANAGEMENT).ip

    def guest_dhcp_range(self) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
        subnet = self.subnets[Net.GUEST]
        return subnet.network_address + 100, subnet.network_address + 250

    def blank_tap(self, index: int) -> str:
        """The tap of the lab's blank machine number `index` (1-99) on the management
        network (`Lab.blank_machine`)."""
        if not 1 <= index <= 99:
            raise LabError(f"blank machines are numbered 1 to 99, not {index}")
        return f"{self.spec.prefix}b{index}"

    def blank_machine_dir(self, name: str) -> Path:
        return self.state_dir / "blank" / name

    def blank_uuid(self, name: str) -> uuid.UUID:
        """A blank machine's SMBIOS UUID: stable for its name, distinct between labs."""
        return uuid.uuid5(_HOST_UUID_NAMESPACE, f"{self.spec.prefix}/blank/{name}")

    def netsvc_plan(self, *, pxe: bool = True, boot_http_port: int | None = None,
                    refresh_s: float = 5.0) -> str:
        """An address plan (TOML, `--netsvc-file`) for an engine on this machine serving the
        lab's management network as `ovirtmgmt`: DHCP (dynamic .100-.199, leaving the lab
        hosts' fixed addresses alone), DNS, and with `pxe` network boot (TFTP, and the boot
        files over HTTP on `boot_http_port`, or TFTP only with None)."""
        subnet = self.subnets[Net.MANAGEMENT]
        base = subnet.network_address
        lines = [
            f'domain = "{self.spec.prefix}.lab"', "upstream_dns = []", "ntp = false",
            f"refresh_s = {refresh_s}",
            "[[networks]]", 'name = "ovirtmgmt"', f'interface = "{self.bridge(Net.MANAGEMENT)}"',
            f'subnet = "{subnet}"', f'address = "{self.engine_address()}"',
            f'dhcp_range = "{base + 100}-{base + 199}"',
            f'reserved_range = "{base + 200}-{base + 250}"',
            f"pxe = {'true' if pxe else 'false'}",
            "[pxe]", f"http_port = {boot_http_port if boot_http_port else 'false'}",
        ]
        return "\n".join(lines) + "\n"

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        names = ", ".join(h.name for h in self.hosts)
        raise LabError(f"the lab has no host {name!r}; its hosts are {names}")

    @property
    def nodes(self) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if h.role is Role.NODE)

    @property
    def storage(self) -> Host:
        return self.hosts[0]

    def host_dir(self, host: Host) -> Path:
        return self.state_dir / host.name

    def nfs_export_dir(self) -> Path:
        return self.host_dir(self.storage) / "nfs-export"

    def iscsi_target(self) -> str:
        return f"iqn.2026-11.org.overt.lab:{self.spec.prefix}.storage"

    def _address(self, net: Net, host_number: int) -> ipaddress.IPv4Interface:
        subnet = self.subnets[net]
        return ipaddress.IPv4Interface(f"{subnet.network_address + host_number}/{subnet.prefixlen}")

    def _host(self, name: str, short: str, role: Role, number: int, nets: tuple[Net, ...]) -> Host:
        ifaces = tuple(
            Interface(
                net=net,
                outer=f"{self.spec.prefix}{short}{net.value[0]}",
                inner=f"{net.value}0",
                address=None if net is Net.GUEST else self._address(net, number),
            )
            for net in nets
        )
        return Host(
            name=name,
            role=role,
            namespace=f"{self.spec.prefix}-{name}",
            interfaces=ifaces,
            host_uuid=uuid.uuid5(_HOST_UUID_NAMESPACE, f"{self.spec.prefix}/{name}"),
        )

    def _storage_host(self) -> Host:
        return self._host("storage", "st", Role.STORAGE, 2, (Net.MANAGEMENT, Net.STORAGE))

    def _node(self, index: int) -> Host:
        nets = (Net.MANAGEMENT, Net.STORAGE, Net.GUEST)
        return self._host(f"node{index}", f"n{index}", Role.NODE, 10 + index, nets)
