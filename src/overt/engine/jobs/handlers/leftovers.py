"""Volumes a job that failed for good may have left on storage, and the job that removes
them.

A job records each volume it is about to make (`making`) before it asks a node for it,
in its own row: a reply lost or a crash after that still leaves the volume known. When
the job fails for good, its compensation (one database transaction, no node calls) hands
every such volume that no chain records to a `RemoveVolumes` job, submitted in that same
transaction (`hand_off`); an iSCSI volume keeps its extent reserved until then. The
follow-up job removes the volumes through any host that reaches their domain, marks the
volumes under them leaves again, frees the extents and records what it cleaned and why.
Every step is safe to repeat, so whenever the engine dies, storage and the database end
up agreeing.

A disk creation or copy that fails for good removes its disks from the database at once
(`forget_disk`, as oVirt's AddDisk does) and hands their volumes to the same job
(`remove_later`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import (
    Disk,
    DiskAttachment,
    ExtentReservation,
    Host,
    Job,
    Snapshot,
    SnapshotVolume,
    StorageDomain,
    Vm,
)
from overt.engine.jobs import queue
from overt.engine.jobs.context import JobContext, Unit
from overt.engine.jobs.errors import RetryLater
from overt.engine.jobs.handlers.snapshot_memory import memory_target
from overt.engine.jobs.handlers.snapshot_volumes import delete_volumes, volume_host, volumes_of
from overt.engine.jobs.kinds import JobSpec, LeftVolume, RemoveVolumes
from overt.engine.model.status import HostStatus, LogSeverity, VmStatus
from overt.engine.nodes import NodeCommandFailed
from overt.engine.queries import lookup
from overt.engine.queries.shared_storage import extent_of, release_reservations
from overt.protocol.commands import Empty, VmMemoryStagingDrop

_MAKING = "volumes_in_making"  # in the job's result: volumes asked of a node, maybe made
_REMOVED = "removed_volumes"  # in a RemoveVolumes job's result: its work is recorded
_STAGING_DROPPED = "staging_dropped"  # ...: the host deleted the staged memory state
log = logging.getLogger(__name__)
# A running VM's leftovers wait for it to be down: retried this often (a minute apart).
LIVE_PATIENCE = 24 * 60


async def making(ctx: JobContext, domain: StorageDomain, path: str, *,
                 leaf: str | None = None) -> None:
    """`path` is about to be made on `domain` (over `leaf`, when it is a leaf again once
    the new volume is gone): recorded before the node is asked."""
    entry = LeftVolume(storage_domain_id=domain.id, path=path, leaf=leaf).model_dump(
        mode="json", exclude_none=True)
    async with ctx.transaction() as session:
        job = await lookup.get(session, Job, ctx.job.id, for_update=True)
        known = job.result.get(_MAKING, [])
        if entry not in known:
            job.result = {**job.result, _MAKING: [*known, entry]}


async def dropped(ctx: JobContext, paths: Iterable[str]) -> None:
    """The job itself removed these volumes: nothing of them is left."""
    gone = set(paths)
    async with ctx.transaction() as session:
        job = await lookup.get(session, Job, ctx.job.id, for_update=True)
        job.result = {**job.result, _MAKING: [
            e for e in job.result.get(_MAKING, []) if e["path"] not in gone]}


async def recorded_paths(session: AsyncSession, paths: Iterable[str]) -> set[str]:
    """Those of `paths` a disk's chain records (its active volume or a snapshot's)."""
    wanted = list(set(paths))
    if not wanted:
        return set()
    active = (await session.execute(select(Disk.image_path).where(
        Disk.image_path.in_(wanted)))).scalars().all()
    frozen = (await session.execute(select(SnapshotVolume.image_path).where(
        SnapshotVolume.image_path.in_(wanted)))).scalars().all()
    memory = [path for row in await session.execute(
        select(Snapshot.memory_volume, Snapshot.memory_metadata_volume).where(
            Snapshot.memory_volume.in_(wanted) | Snapshot.memory_metadata_volume.in_(wanted)))
        for path in row if path in wanted]
    return {*active, *frozen, *memory}


async def hand_off(session: AsyncSession, ctx: JobContext, *, vm_id: uuid.UUID | None,
                   live: bool, message: str, staged_on: uuid.UUID | None = None,
                   staged_memory: tuple[str, ...] = ()) -> set[str]:
    """In a failed job's compensation: a `RemoveVolumes` job for the volumes it may have
    made that no chain records; their paths (whose extents that job frees). It takes the
    VM's lock from the failed job, unless the VM runs (`live`). `staged_on`: the host
    that may keep a staged copy of the memory meant for `staged_memory` (a memory
    snapshot's volumes), which that job has deleted too."""
    entries = [LeftVolume.model_validate(e) for e in ctx.job.result.get(_MAKING, [])]
    recorded = await recorded_paths(session, [e.path for e in entries])
    left = tuple(e for e in entries if e.path not in recorded)
    if not left:
        return set()
    if vm_id is not None and not live:
        await queue.release(session, ctx.job.id, "vm", vm_id)
        await session.flush()
    left_paths = {e.path for e in left}
    staged = staged_on is not None and bool(staged_memory) \
        and all(p in left_paths for p in staged_memory)
    await remove_later(session, ctx, left, vm_id=vm_id, live=live, message=message,
                       staged_on=staged_on if staged else None,
                       staged_memory=staged_memory if staged else ())
    return left_paths


async def remove_later(session: AsyncSession, ctx: JobContext, volumes: Sequence[LeftVolume],
                       *, message: str, vm_id: uuid.UUID | None = None,
                       live: bool = False, staged_on: uuid.UUID | None = None,
                       staged_memory: tuple[str, ...] = ()) -> Job:
    """In a failed job's compensation: the `RemoveVolumes` job that takes `volumes` (which
    no chain records) off storage, because the job failed with `message`."""
    spec = RemoveVolumes(volumes=tuple(volumes), failed_job_id=ctx.job.id, vm_id=vm_id,
                         live=live, reason=f"{ctx.job.description} failed: {message}",
                         staged_on=staged_on, staged_memory=staged_memory)
    return await queue.submit(session, spec, description=f"Removing {len(volumes)} volume(s) "
                              f"left by job '{ctx.job.description}'",
                              owner_id=ctx.job.owner_id, correlation_id=ctx.job.correlation_id,
                              max_attempts=LIVE_PATIENCE if live else None)


async def forget_disk(session: AsyncSession, disk: Disk) -> LeftVolume:
    """In a failed job's compensation: a disk it was making is removed with its
    attachments; its volume (whatever part of it reached storage) is returned for
    `remove_later`, an iSCSI volume's extent reserved until then."""
    if extent_of(disk.image_path) is not None:
        session.add(ExtentReservation(image_path=disk.image_path,
                                      storage_domain_id=disk.storage_domain_id))
    await session.execute(delete(DiskAttachment).where(DiskAttachment.disk_id == disk.id))
    await session.delete(disk)
    await session.flush()
    return LeftVolume(storage_domain_id=disk.storage_domain_id, path=disk.image_path)


async def remove_volumes(ctx: JobContext, spec: RemoveVolumes) -> dict[str, Any]:
    async with ctx.transaction() as session:
        job = await lookup.get(session, Job, ctx.job.id)
        if _REMOVED in job.result:
            return dict(job.result)  # recorded by an attempt that died before it ended
        vm = await session.get(Vm, spec.vm_id) if spec.vm_id is not None else None
    await _drop_staged(ctx, spec)  # at once: it needs no VM to be down
    if spec.live and vm is not None and vm.status != VmStatus.DOWN:
        raise RetryLater(f"VM {vm.name} is {vm.status}: its QEMU may hold the volumes",
                         max_delay_s=60)
    removed: list[str] = []
    names: list[str] = []
    for domain_id in dict.fromkeys(v.storage_domain_id for v in spec.volumes):
        volumes = [v for v in spec.volumes if v.storage_domain_id == domain_id]
        async with ctx.transaction() as session:
            domain = await session.get(StorageDomain, domain_id)
            recorded = await recorded_paths(session, [v.path for v in volumes])
        if domain is None:
            continue  # the domain was removed, and its volumes with it
        left = [v for v in volumes if v.path not in recorded]
        if left:
            await _remove(ctx, domain, left)
            removed += [v.path for v in left]
            names.append(domain.name)
    async with ctx.transaction() as session:
        job = await lookup.get(session, Job, ctx.job.id, for_update=True)
        await release_reservations(session, [v.path for v in spec.volumes])
        audit.record(session, f"Removed {len(removed)} volume(s) left on storage domain(s) "
                     f"{', '.join(names) or '-'} by a job that failed ({spec.reason}): "
                     f"{', '.join(removed) or 'none was left'}",
                     code=audit.LEFTOVER_VOLUMES_REMOVED, vm_id=spec.vm_id,
                     storage_domain_id=spec.volumes[0].storage_domain_id, job_id=ctx.job.id,
                     user_id=ctx.job.owner_id)
        job.result = {_REMOVED: removed}
    return {_REMOVED: removed}


async def _drop_staged(ctx: JobContext, spec: RemoveVolumes) -> None:
    """A memory snapshot given up: its host deletes the copy of the state it staged for
    a retry (`vm.memory_staging_drop`), once. The volumes' removal does not wait on it: a
    host that is not up now is asked at the job's next attempt, and one gone for good
    (removed) took its storage directory with it."""
    if spec.staged_on is None or spec.vm_id is None or len(spec.staged_memory) != 2:
        return
    async with ctx.transaction() as session:
        job = await lookup.get(session, Job, ctx.job.id)
        if job.result.get(_STAGING_DROPPED):
            return
        host = await session.get(Host, spec.staged_on)
        domain = await session.get(StorageDomain, spec.volumes[0].storage_domain_id)
    if host is None or domain is None:
        return
    if host.status != HostStatus.UP:
        log.info("host %s is %s: its staged memory state is dropped at a later attempt",
                 host.name, host.status)
        return
    box = ctx.services.secret_box()
    memory, metadata = (memory_target(domain, p, box, "", kind)
                        for p, kind in zip(spec.staged_memory, ("MEMD", "MEMM"), strict=True))
    try:
        async with ctx.step(f"Deleting the memory state staged on host {host.name}",
                            host_id=host.id):
            await ctx.nodes.call(host, VmMemoryStagingDrop(
                vm_id=spec.vm_id, memory=memory, metadata=metadata), Empty,
                key=ctx.key("staging-drop"), timeout_s=60)
    except NodeCommandFailed as exc:
        log.warning("host %s kept the staged memory state of VM %s: %s", host.name,
                    spec.vm_id, exc)
        return
    async with ctx.transaction() as session:
        job = await lookup.get(session, Job, ctx.job.id, for_update=True)
        job.result = {**job.result, _STAGING_DROPPED: True}


async def _remove(ctx: JobContext, domain: StorageDomain, volumes: list[LeftVolume]) -> None:
    host = await volume_host(ctx, domain)
    async with ctx.step(f"Removing {len(volumes)} volume(s) left on storage domain "
                        f"{domain.name}", host_id=host.id):
        await delete_volumes(ctx, host, domain, [v.path for v in volumes],
                             key=f"leftover-{domain.id}")
        for number, volume in enumerate(volumes):
            if volume.leaf is None:
                continue
            async with ctx.transaction() as session:
                active = (await session.execute(select(Disk.id).where(
                    Disk.image_path == volume.leaf))).first() is not None
            if active:  # still the disk's volume, with nothing over it any more
                await volumes_of(domain).leaf_again(ctx, host, domain, volume.leaf,
                                                    key=f"leftover-leaf-{domain.id}-{number}")


async def remove_failed(session: AsyncSession, ctx: JobContext, spec: RemoveVolumes,
                        message: str) -> None:
    """The volumes stay where they are, their extents reserved (never given to another
    volume): the administrator is told which, to remove them by hand."""
    audit.record(session, f"Volume(s) left by a job that failed ({spec.reason}) could not be "
                 f"removed and stay on storage: {', '.join(v.path for v in spec.volumes)}: "
                 f"{message}", code=audit.LEFTOVER_VOLUMES_KEPT, severity=LogSeverity.ERROR,
                 vm_id=spec.vm_id, storage_domain_id=spec.volumes[0].storage_domain_id,
                 job_id=ctx.job.id)


UNITS: dict[type[JobSpec], Unit[Any]] = {
    RemoveVolumes: Unit(remove_volumes, compensate=remove_failed),
}
