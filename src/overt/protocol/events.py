"""Events a node sends the engine: ordered per node (seq) except the lossy stats."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from overt.protocol.host import HostState, HostStats, LeaseReport, VmStats, VmStatusReport
from overt.protocol.vm import WireModel


class VmLifecycle(WireModel):
    """A VM changed state (from libvirt's lifecycle events)."""

    type: Literal["vm.lifecycle"] = "vm.lifecycle"
    vm: VmStatusReport
    detail: str = ""  # libvirt's event and detail, e.g. "stopped/shutdown"


class Heartbeat(WireModel):
    type: Literal["host.heartbeat"] = "host.heartbeat"
    vm_count: int
    free_memory_mib: int
    uptime_s: float


class HostStateReport(WireModel):
    """The node's full state: sent first after the agent starts or reconnects."""

    type: Literal["host.state"] = "host.state"
    state: HostState


class StatsSample(WireModel):
    """Host and per-VM stats of one sampling interval. Lossy: never sequenced."""

    type: Literal["stats"] = "stats"
    interval_s: float
    host: HostStats
    vms: tuple[VmStats, ...] = ()
    leases: LeaseReport | None = None  # none: the node runs no lease keeper


Event = Annotated[
    VmLifecycle | Heartbeat | HostStateReport | StatsSample, Field(discriminator="type")
]
