"""What a node is and how it is doing: capabilities, VM states, stats samples."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import Field

from overt.protocol.vm import WireModel


class VirtMode(StrEnum):
    KVM = "kvm"  # hardware virtualization works on this host
    QEMU = "qemu"  # software emulation (TCG) only


class VmState(StrEnum):
    """A domain's state as the node sees it (mapped to oVirt's VmStatus by the engine)."""

    RUNNING = "running"
    PAUSED = "paused"  # paused on request
    PAUSED_ERROR = "paused_error"  # paused by the hypervisor (I/O error, emulation failure)
    SHUTTING_DOWN = "shutting_down"
    SHUTOFF = "shutoff"  # defined, not running
    CRASHED = "crashed"
    SUSPENDED = "suspended"  # saved to disk (managed save)
    GONE = "gone"  # no domain any more (transient domain stopped, or undefined)


class KdumpStatus(StrEnum):
    """Whether the host's crash kernel would tell the engine it dumps (vdsm's `kdumpStatus`):
    its crash kernel is loaded and fence_kdump messages are configured."""

    ENABLED = "enabled"  # crash kernel loaded, fence_kdump targets configured
    DISABLED = "disabled"  # no crash kernel loaded, or no fence_kdump targets
    UNKNOWN = "unknown"  # the node cannot tell (or an older agent that does not report it)


class NicInfo(WireModel):
    name: str
    mac: str | None = None
    addresses: tuple[str, ...] = ()
    bridge: bool = False
    speed_mbps: int | None = None
    mtu: int | None = None


class HostCapabilities(WireModel):
    host_uuid: UUID
    hostname: str
    agent_version: str
    protocol_version: int
    cpu_model: str
    cpu_sockets: int
    cpu_cores: int  # per socket
    cpu_threads: int  # per core
    memory_mib: int
    nics: tuple[NicInfo, ...] = ()
    libvirt_version: str
    qemu_version: str
    virt_mode: VirtMode
    kernel: str
    kdump_status: KdumpStatus = KdumpStatus.UNKNOWN


class VmStatusReport(WireModel):
    """One VM as the node sees it, Overt's facts read back from the domain's metadata."""

    vm_id: UUID | None  # None for a domain Overt did not create (external)
    name: str
    state: VmState
    reason: str = ""
    spec_version: int | None = None
    vnc_port: int | None = None


class ReportedNetwork(WireModel):
    """A logical network as the node has really made it (read from the system, not from
    what it was asked): the engine compares it with the network's definition."""

    name: str
    bridge: str
    nic: str | None = None
    vlan: int | None = None  # the OVS tag of its bridge; None for an untagged bridge
    mtu: int | None = None
    addresses: tuple[str, ...] = ()  # "10.1.2.3/24"


class ReportedBondSlave(WireModel):
    name: str
    link_up: bool = False  # the slave's carrier, as the bond sees it


class ReportedBond(WireModel):
    """An Open vSwitch bond as the node finds it on its switch (whoever made it), with the
    slave that carries its traffic now (active-backup)."""

    name: str
    mode: str  # OVS's bond_mode: active-backup, balance-slb, balance-tcp
    lacp: str = "off"  # OVS's lacp_status: off, configured, negotiated
    slaves: tuple[ReportedBondSlave, ...] = ()
    active_slave: str | None = None


class HostState(WireModel):
    """The full truth of a node at one moment; the engine resyncs from it."""

    host_uuid: UUID
    vms: tuple[VmStatusReport, ...]
    free_memory_mib: int
    seq: int  # the sequence number of the last event sent before this report
    boot_id: UUID | None = None  # the agent run `seq` counts in (None from older agents)
    # The host networks it carries; None from a node that does not manage host networks.
    networks: tuple[ReportedNetwork, ...] | None = None
    # The OVS bonds on its switch; None as for `networks`.
    bonds: tuple[ReportedBond, ...] | None = None


class NicStats(WireModel):
    name: str
    rx_bytes: int
    tx_bytes: int
    rx_rate_bps: float = 0.0
    tx_rate_bps: float = 0.0


class HostStats(WireModel):
    cpu_percent: float = Field(ge=0)
    memory_total_mib: int
    memory_used_mib: int
    memory_free_mib: int
    nics: tuple[NicStats, ...] = ()


class HostIdLease(WireModel):
    """The host's id lease on a storage domain, as its lease keeper last renewed it."""

    domain_id: UUID
    renewed_age_s: float = Field(ge=0)  # how long before the report
    lease_timeout_s: float = Field(gt=0)


class VmLease(WireModel):
    vm_id: UUID
    domain_id: UUID
    renewed_age_s: float = Field(ge=0)


class LeaseReport(WireModel):
    """What the node's lease keeper holds: the engine's proof of who still renews."""

    domains: tuple[HostIdLease, ...] = ()
    vms: tuple[VmLease, ...] = ()


class VmStats(WireModel):
    vm_id: UUID | None
    name: str
    cpu_percent: float = Field(ge=0)  # of one host CPU; 100 * vcpus at most
    cpu_time_ns: int
    memory_mib: int
    disk_read_bytes: int = 0
    disk_write_bytes: int = 0
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0
