"""Address plans: what a managed network needs that oVirt's Network has no fields for.

oVirt's `Network` carries no subnet, gateway, DHCP range or DNS domain, so Overt keeps them
on the engine side, in a TOML file (`OVERT_NETSVC_FILE`), not in the API. A network named
there is *managed*: the engine serves DHCP, DNS and NTP on it.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overt.config import SettingsError
from overt.engine.netsvc.pxe import DEFAULT_CMDLINE, DEFAULT_HTTP_PORT, BootEntry

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class PlanError(SettingsError):
    """The address plan file is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class NetworkPlan:
    """One managed network: the engine's interface and address on it, and its addresses."""

    name: str
    interface: str
    subnet: ipaddress.IPv4Network
    address: ipaddress.IPv4Address  # the engine's: DNS, DHCP and NTP answer here
    gateway: ipaddress.IPv4Address | None
    dhcp_range: tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]  # dynamic leases
    reserved_range: tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]  # VM NICs' fixed ones
    data_center: str | None = None
    lease_time: str = "1h"
    pxe: bool = False  # machines on it may boot from the network (the plan's boot entry)

    def reserved_addresses(self) -> list[ipaddress.IPv4Address]:
        low, high = self.reserved_range
        return [ipaddress.IPv4Address(n) for n in range(int(low), int(high) + 1)
                if ipaddress.IPv4Address(n) != self.address]


@dataclass(frozen=True)
class ServicesPlan:
    """Everything the network services need: the DNS domain, upstreams and networks."""

    domain: str
    networks: tuple[NetworkPlan, ...]
    engine_name: str = "engine"
    upstream_dns: tuple[str, ...] = ()
    ntp_servers: tuple[str, ...] = ()
    ntp: bool = True
    refresh_s: float = 5.0
    gateway_port: int = 8444
    boot: BootEntry = field(default_factory=BootEntry)

    @property
    def serves_pxe(self) -> bool:
        return any(net.pxe for net in self.networks)

    def network(self, name: str) -> NetworkPlan | None:
        return next((n for n in self.networks if n.name == name), None)


def dns_label(name: str) -> str:
    """An object name as a DNS label: lower case, anything else than a-z 0-9 becomes `-`."""
    label = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")[:63].strip("-")
    return label or "x"


def _range(value: object, subnet: ipaddress.IPv4Network, what: str,
           net: str) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    if not isinstance(value, str) or value.count("-") != 1:
        raise PlanError(f"network {net}: {what} must be 'FIRST-LAST', got {value!r}")
    try:
        low, high = (ipaddress.IPv4Address(part.strip()) for part in value.split("-"))
    except ValueError as exc:
        raise PlanError(f"network {net}: {what}: {exc}") from None
    if low > high or low not in subnet or high not in subnet:
        raise PlanError(f"network {net}: {what} {value} must be an ascending range in {subnet}")
    return low, high


def _overlap(a: tuple[ipaddress.IPv4Address, ipaddress.IPv4Address],
             b: tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


_PLAN_KEYS = {"domain", "networks", "engine_name", "upstream_dns", "ntp_servers", "ntp",
              "refresh_s", "gateway_port", "pxe"}
_NETWORK_KEYS = {"name", "interface", "subnet", "address", "gateway", "dhcp_range",
                 "reserved_range", "data_center", "lease_time", "pxe"}
_BOOT_KEYS = {"kernel", "initrd", "cmdline", "http_port"}


def _unknown(raw: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(raw) - known)
    if unknown:
        raise PlanError(f"{where}: unknown setting {', '.join(unknown)} "
                        f"(known: {', '.join(sorted(known))})")


def _network(raw: dict[str, Any]) -> NetworkPlan:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise PlanError("every [[networks]] entry needs a name (the logical network's)")
    _unknown(raw, _NETWORK_KEYS, f"network {name}")
    try:
        subnet = ipaddress.IPv4Network(str(raw.get("subnet")))
        address = ipaddress.IPv4Address(str(raw.get("address")))
        gateway = ipaddress.IPv4Address(str(raw["gateway"])) if raw.get("gateway") else None
    except ValueError as exc:
        raise PlanError(f"network {name}: {exc}") from None
    if address not in subnet:
        raise PlanError(f"network {name}: the engine's address {address} is not in {subnet}")
    if gateway is not None and gateway not in subnet:
        raise PlanError(f"network {name}: the gateway {gateway} is not in {subnet}")
    dhcp = _range(raw.get("dhcp_range"), subnet, "dhcp_range", name)
    reserved = _range(raw.get("reserved_range"), subnet, "reserved_range", name)
    if _overlap(dhcp, reserved):
        raise PlanError(f"network {name}: dhcp_range and reserved_range overlap")
    interface = raw.get("interface", name)
    if not isinstance(interface, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", interface):
        raise PlanError(f"network {name}: {interface!r} is not an interface name")
    return NetworkPlan(name=name, interface=interface, subnet=subnet, address=address,
                       gateway=gateway, dhcp_range=dhcp, reserved_range=reserved,
                       data_center=raw.get("data_center"),
                       lease_time=str(raw.get("lease_time", "1h")),
                       pxe=_flag(raw.get("pxe", False), f"network {name}: pxe"))


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise PlanError(f"{what} must be true or false, got {value!r}")
    return value


def _boot_entry(raw: object) -> BootEntry:
    """The `[pxe]` table: the kernel and initramfs every network boot runs (both or neither:
    neither means the test guest's), and their command line."""
    if raw is None:
        return BootEntry()
    if not isinstance(raw, dict):
        raise PlanError("pxe must be a table ([pxe] with kernel, initrd, cmdline)")
    _unknown(raw, _BOOT_KEYS, "[pxe]")
    paths: dict[str, Path] = {}
    for key in ("kernel", "initrd"):
        if key in raw:
            path = Path(str(raw[key]))
            if not path.is_absolute() or not path.is_file():
                raise PlanError(f"[pxe] {key}: {raw[key]!r} is not a file (give an absolute "
                                "path to an existing kernel or initramfs)")
            paths[key] = path
    if len(paths) == 1:
        raise PlanError("[pxe] needs both kernel and initrd, or neither (the test guest's)")
    cmdline = str(raw.get("cmdline", DEFAULT_CMDLINE))
    if "\n" in cmdline or "\r" in cmdline:
        raise PlanError("[pxe] cmdline must be one line")
    port = raw.get("http_port", DEFAULT_HTTP_PORT)
    if port is not False and (not isinstance(port, int) or isinstance(port, bool)
                              or not 0 < port < 65536):
        raise PlanError(f"[pxe] http_port must be a port number or false, got {port!r}")
    return BootEntry(kernel=paths.get("kernel"), initrd=paths.get("initrd"), cmdline=cmdline,
                     http_port=port or None)


def parse_plan(raw: dict[str, Any], *, gateway_port: int = 8444) -> ServicesPlan:
    _unknown(raw, _PLAN_KEYS, "address plan")
    domain = str(raw.get("domain", "")).strip(".").lower()
    if not domain or not all(_LABEL.match(label) for label in domain.split(".")):
        raise PlanError(f"domain {raw.get('domain')!r} is not a DNS domain (e.g. 'example')")
    entries = raw.get("networks", [])
    if not isinstance(entries, list) or not all(isinstance(n, dict) for n in entries):
        raise PlanError("networks must be [[networks]] tables")
    networks = tuple(_network(n) for n in entries)
    if not networks:
        raise PlanError("the plan names no [[networks]]")
    names = [n.name for n in networks]
    if len(set(names)) != len(names):
        raise PlanError("a network is planned twice")
    for i, a in enumerate(networks):
        for b in networks[i + 1:]:
            if a.subnet.overlaps(b.subnet):
                raise PlanError(f"networks {a.name} and {b.name} have overlapping subnets")
    engine_name = dns_label(str(raw.get("engine_name", "engine")))
    upstream = [str(s) for s in raw.get("upstream_dns", [])]
    for server in upstream:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise PlanError(f"upstream_dns: {server!r} is not an IP address") from None
    return ServicesPlan(
        domain=domain, networks=networks, engine_name=engine_name,
        upstream_dns=tuple(upstream),
        ntp_servers=tuple(str(s) for s in raw.get("ntp_servers", [])),
        ntp=bool(raw.get("ntp", True)), refresh_s=float(raw.get("refresh_s", 5.0)),
        gateway_port=int(raw.get("gateway_port", gateway_port)),
        boot=_boot_entry(raw.get("pxe")))


def load_plan(path: Path, *, gateway_port: int = 8444) -> ServicesPlan:
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise PlanError(f"cannot read the address plan {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"{path}: {exc}") from None
    return parse_plan(raw, gateway_port=gateway_port)
