"""Host networking on the wire: the networks a node must carry and what it did about them."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from overt.protocol.vm import WireModel

BRIDGE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$"
NIC_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,14}$"


OVERLAY_DEFAULT_MTU = 1450  # an overlay's MTU 0: 1500 less the 50 bytes of VXLAN headers


class VxlanWiring(WireModel):
    """An overlay: the network's frames go in VXLAN (UDP 4789) from this host's `local`
    address to each of the `remotes` (the other hosts that carry it)."""

    vni: int = Field(ge=1, le=16777215)
    local: str = Field(min_length=1, max_length=45)
    remotes: tuple[str, ...] = ()


class NetworkWiring(WireModel):
    """One logical network on one host NIC: an OVS VLAN bridge when it has a VLAN id,
    a Linux bridge when it has none; with `vxlan`, a Linux bridge whose port is a VXLAN
    device (routed by the host to its remotes) instead of the NIC itself."""

    name: str = Field(min_length=1, max_length=64)
    bridge: str = Field(pattern=BRIDGE_NAME)
    nic: str = Field(pattern=NIC_NAME)
    vlan: int | None = Field(default=None, ge=0, le=4094)
    mtu: int = Field(default=0, ge=0, le=65520)
    boot_protocol: Literal["none", "static", "dhcp"] = "none"
    address: str | None = None  # static: "10.1.2.3/24"
    gateway: str | None = None
    ipv6_boot_protocol: Literal["none", "static", "autoconf", "dhcp"] = "none"
    ipv6_address: str | None = None  # static: "2001:db8::5/64"
    ipv6_gateway: str | None = None
    vxlan: VxlanWiring | None = None


class BondWiring(WireModel):
    """Host NICs joined as one Open vSwitch bond, the trunk port of its own OVS bridge."""

    name: str = Field(pattern=NIC_NAME)
    slaves: tuple[str, ...] = Field(min_length=2)
    mode: Literal["active-backup", "balance-slb", "balance-tcp"] = "active-backup"
    lacp: Literal["off", "active", "passive"] = "off"


class NetworkSetup(WireModel):
    """What the node did: the networks it carries now."""

    carried: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


class HostSetupNetworks(WireModel):
    """The full set of networks the node must carry (those it made and are not listed go).

    With `rollback_after_s`, the node undoes the change unless the engine confirms it
    (`host.commit_networks`) within that many seconds: oVirt's connectivity check."""

    name: Literal["host.setup_networks"] = "host.setup_networks"
    result: ClassVar[type[NetworkSetup]] = NetworkSetup
    mutates: ClassVar[bool] = True
    networks: tuple[NetworkWiring, ...] = ()
    bonds: tuple[BondWiring, ...] = ()
    rollback_after_s: float | None = Field(default=None, gt=0, le=600)


class HostCommitNetworks(WireModel):
    """Keep the networks as they are now (and stop any pending rollback)."""

    name: Literal["host.commit_networks"] = "host.commit_networks"
    result: ClassVar[type[NetworkSetup]] = NetworkSetup
    mutates: ClassVar[bool] = True
