"""What the VM page shows of its cdrom: the media in the drive and the ISOs it may hold."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Cluster, Disk, StorageDomain, Vm
from overt.engine.model.status import VmStatus
from overt.engine.services import cdroms


async def cdrom_values(session: AsyncSession, vm: Vm) -> dict[str, Any]:
    """What the page shows: the media in the drive now and the ISOs it may hold."""
    live = vm.status is not VmStatus.DOWN
    disk_id = cdroms.cdrom_disk_id(vm, current=live)
    media = await session.get(Disk, disk_id) if disk_id is not None else None
    cluster = await session.get(Cluster, vm.cluster_id)
    isos = (await session.execute(
        select(Disk).join(StorageDomain, StorageDomain.id == Disk.storage_domain_id)
        .where(Disk.content_type == cdroms.ISO,
               StorageDomain.data_center_id == (cluster.data_center_id if cluster else None))
        .order_by(Disk.name))).scalars().all()
    return {"cdrom_media": media, "cdrom_isos": isos, "cdrom_live": live,
            "cdrom_changeable": not live or vm.status in cdroms.LIVE, "cdrom_error": None}
