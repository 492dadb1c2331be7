"""Changing the NICs of a running VM: hot-plug, unplug and link state (the domain's live
devices, and its persistent definition when it has one)."""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel

from overt.protocol.host import VmStatusReport
from overt.protocol.vm import NicSpec, WireModel


class VmNicPlug(WireModel):
    """Attach the NIC to the running VM; already attached (same MAC) is success."""

    name: Literal["vm.nic_plug"] = "vm.nic_plug"
    result: ClassVar[type[BaseModel]] = VmStatusReport
    mutates: ClassVar[bool] = True
    vm_id: UUID
    nic: NicSpec


class VmNicUnplug(WireModel):
    """Detach the NIC (found by MAC) and wait until the guest released it; absent is success."""

    name: Literal["vm.nic_unplug"] = "vm.nic_unplug"
    result: ClassVar[type[BaseModel]] = VmStatusReport
    mutates: ClassVar[bool] = True
    vm_id: UUID
    nic: NicSpec


class VmNicLink(WireModel):
    """Set the link state of a plugged NIC (found by MAC) to `nic.linked`."""

    name: Literal["vm.nic_link"] = "vm.nic_link"
    result: ClassVar[type[BaseModel]] = VmStatusReport
    mutates: ClassVar[bool] = True
    vm_id: UUID
    nic: NicSpec
