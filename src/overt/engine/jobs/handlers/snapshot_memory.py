"""The memory of snapshots (oVirt's memory dump and metadata volumes): where a node
reaches them, and their removal with their snapshot.

A snapshot's memory volumes are raw volumes of a shared domain that the submission
allocated. A snapshot that a job removes deletes them itself before the snapshot goes
(`delete_memory`, after moving them to the job's row, so a successor deletes them too); snapshots
that a restore or a preview's commit drops hand theirs to a `RemoveVolumes` job in the
transaction that drops them (`drop_memory_later`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Job, Snapshot, StorageDomain, Vm
from overt.engine.jobs import queue
from overt.engine.jobs.context import JobContext
from overt.engine.jobs.handlers.snapshot_volumes import delete_volumes, volume_host
from overt.engine.jobs.handlers.storage_domains import export_of
from overt.engine.jobs.kinds import LeftVolume, MemoryVolumes, RemoveVolumes
from overt.engine.model.errors import Conflict
from overt.engine.model.status import StorageType
from overt.engine.queries import lookup
from overt.engine.queries.shared_storage import extent_of, lun_of, split_volume_path
from overt.engine.secrets import SecretBox
from overt.protocol.storage import IscsiExtentTarget, NfsVolumeTarget
from overt.protocol.vm import IscsiSource, NfsSource

_DELETING = "memory_volumes_to_delete"  # in a removal's result: [domain id, path, path]


def memory_target(domain: StorageDomain, path: str, box: SecretBox | None,
                  description: str, disk_type: str, size_bytes: int = 0
                  ) -> NfsVolumeTarget | IscsiExtentTarget:
    """A memory volume as the node writes it (a new NFS volume with its `.meta`, whose
    DISKTYPE is vdsm's `MEMD` or `MEMM` and DESCRIPTION the alias and description of the
    disk the API shows for it, grown to `size_bytes`, the size the engine allocated; or
    the extent the engine allocated)."""
    if domain.storage_type == StorageType.ISCSI.value:
        extent = extent_of(path)
        if extent is None:
            raise Conflict(f"memory volume {path} is not an extent of its iSCSI domain")
        return IscsiExtentTarget(lun=lun_of(domain, box), offset=extent[0], size=extent[1])
    image_id, volume_id = split_volume_path(path)
    return NfsVolumeTarget(storage=export_of(domain), domain_id=domain.storage_uuid or domain.id,
                           image_id=image_id, volume_id=volume_id,
                           metadata={"DESCRIPTION": description, "DISKTYPE": disk_type},
                           size_bytes=size_bytes)


def memory_source(domain: StorageDomain, path: str, box: SecretBox | None
                  ) -> NfsSource | IscsiSource:
    """A memory volume as the node reads it back before a resume."""
    if domain.storage_type == StorageType.ISCSI.value:
        extent = extent_of(path)
        lun = lun_of(domain, box)
        if extent is None:
            raise Conflict(f"memory volume {path} is not an extent of its iSCSI domain")
        return IscsiSource(portal=lun.portal, target=lun.target, lun=lun.lun, chap=lun.chap,
                           offset=extent[0], size=extent[1])
    return NfsSource(server=domain.address or "", path=f"{domain.path.rstrip('/')}/{path}")


def memory_of(snapshot: Snapshot) -> list[str]:
    return [p for p in (snapshot.memory_volume, snapshot.memory_metadata_volume) if p]


def record_memory(snapshot: Snapshot, memory: MemoryVolumes) -> None:
    snapshot.memory_domain_id = memory.storage_domain_id
    snapshot.memory_volume = memory.volume
    snapshot.memory_metadata_volume = memory.metadata_volume


async def forget_memory(session: AsyncSession, job: Job, snapshot: Snapshot) -> None:
    """Before a removal deletes `snapshot`: its memory volumes move from the snapshot to
    the job's row, for `delete_memory` (or a successor) to delete (an iSCSI extent is
    free once no row names it); a VM that was to resume from it boots instead."""
    paths = memory_of(snapshot)
    if paths and snapshot.memory_domain_id is not None:
        job.result = {**job.result, _DELETING: [str(snapshot.memory_domain_id), *paths]}
        snapshot.memory_domain_id = snapshot.memory_volume = None
        snapshot.memory_metadata_volume = None
    vm = await session.get(Vm, snapshot.vm_id)
    if vm is not None and vm.resume_snapshot_id == snapshot.id:
        vm.resume_snapshot_id = None


async def delete_memory(ctx: JobContext) -> None:
    """Delete the memory volumes `forget_memory` recorded (gone already counts)."""
    async with ctx.transaction() as session:
        job = await lookup.get(session, Job, ctx.job.id)
        pending = list(job.result.get(_DELETING, []))
        domain = await session.get(StorageDomain, uuid.UUID(pending[0])) if pending else None
    if domain is not None:
        host = await volume_host(ctx, domain)
        async with ctx.step("Removing the snapshot's memory volumes", host_id=host.id):
            await delete_volumes(ctx, host, domain, pending[1:], key="memory-delete")
    if pending:
        async with ctx.transaction() as session:
            job = await lookup.get(session, Job, ctx.job.id, for_update=True)
            job.result = {k: v for k, v in job.result.items() if k != _DELETING}


async def drop_memory_later(session: AsyncSession, ctx: JobContext,
                            dropped: Sequence[Snapshot]) -> None:
    """In the transaction that drops snapshots (a restore, a preview's commit): a removal
    job for their memory volumes, and no VM resumes from them."""
    volumes = tuple(LeftVolume(storage_domain_id=s.memory_domain_id, path=path)
                    for s in dropped if s.memory_domain_id is not None
                    for path in memory_of(s))
    for snapshot in dropped:
        vm = await session.get(Vm, snapshot.vm_id)
        if vm is not None and vm.resume_snapshot_id == snapshot.id:
            vm.resume_snapshot_id = None
    if not volumes:
        return
    await session.flush()
    spec = RemoveVolumes(volumes=volumes, failed_job_id=ctx.job.id, vm_id=dropped[0].vm_id,
                         live=True, reason=f"{ctx.job.description} dropped snapshot(s) "
                         f"{', '.join(repr(s.description) for s in dropped)} with their memory")
    await queue.submit(session, spec, description=f"Removing the memory volumes of "
                       f"{len(dropped)} dropped snapshot(s)", owner_id=ctx.job.owner_id,
                       correlation_id=ctx.job.correlation_id)
