"""What the VM page shows of its snapshots: each regular one (oldest first) with its disks,
whether it saved the guest's memory, and its status, the one it previews, and which changes
the VM's status allows now (a running VM's snapshot saves its memory unless told not to,
as oVirt's dialog)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Snapshot, SnapshotVolume, Vm
from overt.engine.model.status import VmStatus
from overt.engine.model.vm_actions import VM_ACTIONS, VmAction
from overt.engine.queries.snapshot_chains import IN_PREVIEW, PREVIEW
from overt.engine.services.snapshots import MEMORY_STATES


@dataclass(frozen=True)
class SnapshotRow:
    snapshot: Snapshot
    disks: int  # how many of the VM's disks it froze a volume of

    @property
    def memory(self) -> bool:
        """It saved the running guest's memory (oVirt's persist_memorystate)."""
        return self.snapshot.memory_volume is not None

    @property
    def status(self) -> str:
        """oVirt's snapshot status: ok, in_preview, or locked while a job changes it."""
        return self.snapshot.status if self.snapshot.status in ("ok", IN_PREVIEW) else "locked"


async def snapshot_values(session: AsyncSession, vm: Vm) -> dict[str, Any]:
    counts = (select(SnapshotVolume.snapshot_id, func.count().label("disks"))
              .group_by(SnapshotVolume.snapshot_id).subquery())
    rows = [SnapshotRow(snapshot, disks or 0) for snapshot, disks in await session.execute(
        select(Snapshot, counts.c.disks).outerjoin(counts, counts.c.snapshot_id == Snapshot.id)
        .where(Snapshot.vm_id == vm.id, Snapshot.kind != PREVIEW)
        .order_by(Snapshot.created_at))]
    previewed = next((row for row in rows if row.status == IN_PREVIEW), None)
    settled = all(row.status == "ok" for row in rows if row is not previewed)
    down = vm.status is VmStatus.DOWN
    return {"snapshots": rows, "snapshot_previewed": previewed, "snapshot_error": None,
            # taking and removing (also live); preview and restore only on a down VM
            "snapshots_changeable": vm.status in VM_ACTIONS[VmAction.SNAPSHOT]
            and previewed is None and settled,
            "snapshots_down": down,
            # a running VM's snapshot saves its memory unless unticked (oVirt's default)
            "snapshots_memory": vm.status in MEMORY_STATES}
