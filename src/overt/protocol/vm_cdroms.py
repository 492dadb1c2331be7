"""Changing the media in a running VM's cdrom drive (insert, change, eject)."""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel

from overt.protocol.host import VmStatusReport
from overt.protocol.vm import CdromSpec, WireModel


class VmCdromChange(WireModel):
    """Put `cdrom.source` in the running VM's cdrom drive (None: eject); the same media
    already in the drive is success."""

    name: Literal["vm.cdrom_change"] = "vm.cdrom_change"
    result: ClassVar[type[BaseModel]] = VmStatusReport
    mutates: ClassVar[bool] = True
    vm_id: UUID
    cdrom: CdromSpec
