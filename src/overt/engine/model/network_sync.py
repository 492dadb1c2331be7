"""Whether a host carries its networks as the engine defines them: pure rules over what
the node reported (`ReportedNetwork`), with oVirt's names for the differences.

An attachment is in sync when the node realised its network with the definition's VLAN
tag and MTU (0 means 1500) and, for a static address, that address and netmask; each
compared property is one of oVirt's `reported_configurations`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from overt.protocol.host import ReportedNetwork

DEFAULT_MTU = 1500
# oVirt's `NonOperationalReason` for a host that lacks a required network of its cluster.
NETWORK_UNREACHABLE = "network_unreachable"


@dataclass(frozen=True)
class WantedNetwork:
    """One attachment as the engine defines it."""

    name: str
    vlan: int | None
    mtu: int  # 0: the default
    boot_protocol: str  # none / static / dhcp
    address: str | None = None
    netmask: str | None = None
    ipv6_boot_protocol: str = "none"  # none / static / autoconf / dhcp
    ipv6_address: str | None = None
    ipv6_prefix: int | None = None


@dataclass(frozen=True)
class ReportedConfiguration:
    """One compared property (oVirt's `ReportedConfiguration`)."""

    name: str
    expected: str
    actual: str

    @property
    def in_sync(self) -> bool:
        return self.expected == self.actual


def parse_reported(rows: Iterable[dict[str, Any]] | None) -> dict[str, ReportedNetwork] | None:
    """The stored report by network name; None when the node never reported networks."""
    if rows is None:
        return None
    return {n.name: n for n in (ReportedNetwork.model_validate(row) for row in rows)}


def compare(wanted: WantedNetwork, reported: ReportedNetwork | None
            ) -> list[ReportedConfiguration]:
    """How the node realised `wanted`: every compared property, expected against actual."""
    if reported is None:
        return [ReportedConfiguration("bridged", "true", "false")]
    configs = [
        ReportedConfiguration("vlan", _text(wanted.vlan), _text(reported.vlan)),
        ReportedConfiguration("mtu", str(wanted.mtu or DEFAULT_MTU), _text(reported.mtu)),
    ]
    if wanted.boot_protocol == "static" and wanted.address:
        actual = _address(wanted.address, reported.addresses)
        configs.append(ReportedConfiguration("ipv4_address", wanted.address,
                                             str(actual.ip) if actual else ""))
        configs.append(ReportedConfiguration("ipv4_netmask", wanted.netmask or "",
                                             str(actual.netmask) if actual else ""))
    if wanted.ipv6_boot_protocol == "static" and wanted.ipv6_address:
        expected = f"{wanted.ipv6_address}/{wanted.ipv6_prefix}"
        have = [str(ipaddress.IPv6Interface(a)) for a in reported.addresses if ":" in a]
        configs.append(ReportedConfiguration(
            "ipv6_address", expected, expected if expected in have else (have[0] if have
                                                                         else "")))
    return configs


def missing_networks(required: Sequence[str], carried: Iterable[str]) -> list[str]:
    """The required networks a host does not carry, in a stable order."""
    have = set(carried)
    return sorted(name for name in required if name not in have)


def _address(wanted: str, addresses: Sequence[str]) -> ipaddress.IPv4Interface | None:
    """The reported address equal to `wanted`, else the first IPv4 one (the difference)."""
    found = []
    for text in addresses:
        try:
            found.append(ipaddress.IPv4Interface(text))
        except ValueError:
            continue
    return next((a for a in found if str(a.ip) == wanted), found[0] if found else None)


def _text(value: int | None) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True)
class SyncState:
    """An attachment's sync as users see it: `configurations` None when the node never
    reported its networks (then only whether the node applied the attachment counts)."""

    in_sync: bool
    configurations: list[ReportedConfiguration] | None


def sync_state(wanted: WantedNetwork, applied: bool,
               reported: dict[str, ReportedNetwork] | None) -> SyncState:
    if reported is None:
        return SyncState(applied, None)
    configurations = compare(wanted, reported.get(wanted.name))
    return SyncState(applied and all(c.in_sync for c in configurations), configurations)
