"""The memory volumes of snapshots as oVirt 4.4+ shows them: disks of their storage domain
whose `content_type` is `memory_dump_volume` (the guest's saved state) or
`memory_metadata_volume` (the domain's XML), each its own image (the disk's id is the
image's, its `image_id` the volume's). oVirt's `Snapshot` type has no element naming them
(the SDK reads none): a client finds them among `/disks` and the domain's disks, and a
snapshot says it has them with `persist_memorystate`. They are read-only here: their
snapshot's removal removes them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.api.context import href
from overt.engine.api.views import ref
from overt.engine.api.wire.render import Representation
from overt.engine.db.tables import Snapshot, Vm
from overt.engine.model.volume_labels import METADATA_BYTES, memory_disk_names
from overt.engine.queries.shared_storage import extent_of, split_volume_path
from overt.engine.services.snapshots import memory_volume_size

DUMP = "memory_dump_volume"
METADATA = "memory_metadata_volume"


@dataclass(frozen=True)
class MemoryDisk:
    """One memory volume of a snapshot, with what its view says."""

    vm: Vm
    snapshot: Snapshot
    path: str
    content_type: str

    @property
    def disk_id(self) -> uuid.UUID:
        return split_volume_path(self.path)[0]


def memory_disks_of(vm: Vm, snapshot: Snapshot) -> list[MemoryDisk]:
    pairs = ((snapshot.memory_volume, DUMP), (snapshot.memory_metadata_volume, METADATA))
    return [MemoryDisk(vm, snapshot, p, kind) for p, kind in pairs
            if p and snapshot.memory_domain_id is not None]


async def memory_disks(session: AsyncSession, *, domain_id: uuid.UUID | None = None,
                       disk_id: uuid.UUID | None = None) -> list[MemoryDisk]:
    """Every snapshot's memory volumes (of one domain, or the one whose image is
    `disk_id`), oldest snapshot first."""
    stmt = select(Snapshot, Vm).join(Vm, Vm.id == Snapshot.vm_id).where(
        Snapshot.memory_domain_id.is_not(None)).order_by(Snapshot.created_at)
    if domain_id is not None:
        stmt = stmt.where(Snapshot.memory_domain_id == domain_id)
    if disk_id is not None:
        part = f"%/{disk_id}/%"
        stmt = stmt.where(or_(Snapshot.memory_volume.like(part),
                              Snapshot.memory_metadata_volume.like(part)))
    found = [m for snapshot, vm in await session.execute(stmt)
             for m in memory_disks_of(vm, snapshot)]
    return [m for m in found if disk_id is None or m.disk_id == disk_id]


def memory_disk_view(m: MemoryDisk) -> Representation:
    """A memory volume as oVirt renders its disk: raw, on the snapshot's domain, `ok`
    once the snapshot is (`locked` while it is made or removed)."""
    image_id, volume_id = split_volume_path(m.path)
    extent = extent_of(m.path)
    if extent is not None:
        size = extent[1]
    else:
        size = memory_volume_size(m.vm.memory_mib) if m.content_type == DUMP else METADATA_BYTES
    alias, description = memory_disk_names(m.vm.name, m.vm.id, m.snapshot.description,
                                           "MEMD" if m.content_type == DUMP else "MEMM")
    return {
        "href": href("disks", image_id), "id": str(image_id), "name": alias, "alias": alias,
        "description": description,
        "actual_size": size, "content_type": m.content_type, "format": "raw",
        "image_id": str(volume_id), "propagate_errors": False, "provisioned_size": size,
        "shareable": False, "sparse": extent is None,
        "status": "ok" if m.snapshot.status in ("ok", "in_preview") else "locked",
        "storage_type": "image", "total_size": size, "wipe_after_delete": False,
        "storage_domains": {"storage_domain": [ref("storagedomains",
                                                   m.snapshot.memory_domain_id)]},
    }
