"""A job that fails its last retry after it made new volumes on shared storage leaves
nothing behind: its compensation hands them to a removal job, which takes them off the
NFS export or the LUN (the fast lane's simulated storage, as in the snapshot tests),
frees their extents and tells the administrator what it cleaned and why."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from overt.engine.db.tables import AuditEvent, ExtentReservation, Job, Lock, Snapshot
from overt.engine.jobs import queue
from overt.engine.jobs.handlers import leftovers
from overt.engine.model.status import VmStatus
from overt.engine.services import snapshots, vms
from overt.node.errors import NodeFailure
from overt.node.storage import iscsi_domain, nfs_domain
from overt.protocol import ErrorCode
from tests.integration.engine.jobs import test_iscsi_snapshot_jobs as on_iscsi
from tests.integration.engine.jobs import test_nfs_snapshot_jobs as on_nfs
from tests.support.loopback import LoopbackEngine

MIB = 1 << 20


def _files(export: Path) -> list[str]:
    return sorted(str(p.relative_to(export)) for p in export.rglob("*") if p.is_file())


async def _failed_for_good(engine: LoopbackEngine, vm_id: uuid.UUID) -> Snapshot:
    """A snapshot whose job fails all its tries (the storage stops answering for the
    second disk's new volume, after the first disk's was made)."""
    snapshot, job = await engine.act(snapshots.add_snapshot, vm_id, "unlucky")
    ended = await engine.job(job.id)
    assert ended.state == "failed" and "stopped answering" in (ended.error or "")
    assert ended.attempts == ended.max_attempts
    await engine.settled()  # the removal of what it left
    return snapshot


async def _cleaned(engine: LoopbackEngine, snapshot: Snapshot, domain: str) -> str:
    """Nothing of the snapshot is in the database; the event saying what was cleaned."""
    async with engine.session() as session:
        assert await session.get(Snapshot, snapshot.id) is None
        assert (await session.execute(select(Lock))).all() == []
        assert (await session.execute(select(func.count()).select_from(ExtentReservation))
                ).scalar_one() == 0
        failed = (await session.execute(select(Job.state).where(Job.state == "failed"))
                  ).scalars().all()
        assert failed == ["failed"]  # the snapshot's job only: the removal is done
        events = (await session.execute(select(AuditEvent.description).where(
            AuditEvent.description.contains(f"left on storage domain(s) {domain}")))
                  ).scalars().all()
    assert len(events) == 1, events
    assert "stopped answering" in events[0]  # why
    return events[0]


async def test_a_snapshot_failing_its_last_retry_on_nfs_leaves_no_volume_behind(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(queue, "MAX_BACKOFF_S", 0.05)
    vm_id, disk_ids, export = await on_nfs._nfs_vm(engine, monkeypatch, tmp_path / "nfs")
    before = await on_nfs._chains(engine, export, disk_ids)
    files = await asyncio.to_thread(_files, export)
    real = nfs_domain.finish_volume

    def unreachable_for_second(storage: Any, relative: str, meta: dict[str, str]) -> None:
        if str(disk_ids[1]) in relative:  # its data is written, its .meta is not
            raise NodeFailure(ErrorCode.STORAGE_UNREACHABLE, "the export stopped answering")
        real(storage, relative, meta)
    monkeypatch.setattr(nfs_domain, "finish_volume", unreachable_for_second)

    snapshot = await _failed_for_good(engine, vm_id)
    # Both new volumes are gone from the export; the volumes under them are leaves again.
    assert await asyncio.to_thread(_files, export) == files
    assert await on_nfs._chains(engine, export, disk_ids) == before
    event = await _cleaned(engine, snapshot, "nfs1")
    assert "Removed 2 volume(s)" in event


async def test_a_snapshot_failing_its_last_retry_on_iscsi_frees_its_extents(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(queue, "MAX_BACKOFF_S", 0.05)
    vm_id, disk_ids, lun = await on_iscsi._iscsi_vm(engine, monkeypatch, tmp_path,
                                                    lun_size=128 * MIB)
    before = await on_iscsi._chains(engine, lun, disk_ids)
    free = await on_iscsi._free(engine)
    real, made = iscsi_domain._format, set()

    async def unreachable_after_first(command: Any) -> Any:
        if command.backing is not None and made and command.offset not in made:
            raise NodeFailure(ErrorCode.STORAGE_UNREACHABLE, "the target stopped answering")
        if command.backing is not None:
            made.add(command.offset)
        return await real(command)
    monkeypatch.setattr(iscsi_domain, "_format", unreachable_after_first)

    snapshot = await _failed_for_good(engine, vm_id)
    assert len(made) == 1  # the first disk's new volume was made, on the LUN
    # The metadata area lists the chains as before, nothing else; every extent is free.
    assert await on_iscsi._chains(engine, lun, disk_ids) == before
    assert await on_iscsi._free(engine) == free
    event = await _cleaned(engine, snapshot, "san1")
    assert "Removed 2 volume(s)" in event


async def test_a_live_snapshot_failing_its_last_retry_keeps_its_volumes_until_the_vm_is_down(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The host never answers whether QEMU took the snapshot: QEMU may be writing the new
    volumes, so they stay (the snapshot is forgotten) until the VM is down; then they go
    and the volumes under them are leaves again."""
    monkeypatch.setattr(queue, "MAX_BACKOFF_S", 0.05)
    vm_id, disk_ids, export = await on_nfs._nfs_vm(engine, monkeypatch, tmp_path / "nfs")
    hyp = await on_nfs._running(engine, vm_id)
    before = await on_nfs._chains(engine, export, disk_ids)
    files = await asyncio.to_thread(_files, export)

    async def no_answer(vm: uuid.UUID, disks: object) -> None:
        raise NodeFailure(ErrorCode.TIMEOUT, "the host stopped answering")
    monkeypatch.setattr(hyp, "disk_snapshot", no_answer)
    snapshot, job = await engine.act(snapshots.add_snapshot, vm_id, "unlucky")
    ended = await engine.job(job.id)
    assert ended.state == "failed" and "stopped answering" in (ended.error or "")

    async def waiting() -> Job | None:
        async with engine.session() as session:
            removal = (await session.execute(select(Job).where(
                Job.action == "storage.remove_volumes"))).scalar_one_or_none()
        return removal if removal is not None and removal.attempts >= 2 else None
    removal = await engine.eventually(waiting, what="the removal to wait for the VM")
    assert removal.state != "done" and "QEMU may hold" in (removal.error or "")
    assert len(await asyncio.to_thread(_files, export)) == len(files) + 6  # 2 volumes kept

    stop = await engine.act(vms.stop_vm, vm_id)
    assert (await engine.job(stop.id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.DOWN])
    await engine.settled()
    assert await asyncio.to_thread(_files, export) == files
    assert await on_nfs._chains(engine, export, disk_ids) == before
    event = await _cleaned(engine, snapshot, "nfs1")
    assert "Removed 2 volume(s)" in event


async def test_an_engine_that_dies_while_removing_leftovers_leaves_them_to_a_successor(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The volumes are off the LUN's records but their extents not yet freed when the
    engine dies: a successor runs the removal again and frees them, once."""
    monkeypatch.setattr(queue, "MAX_BACKOFF_S", 0.05)
    vm_id, disk_ids, lun = await on_iscsi._iscsi_vm(engine, monkeypatch, tmp_path,
                                                    lun_size=128 * MIB)
    before = await on_iscsi._chains(engine, lun, disk_ids)
    free = await on_iscsi._free(engine)
    real_format, real_remove = iscsi_domain._format, leftovers._remove
    removed = asyncio.Event()

    async def unreachable(command: Any) -> Any:
        if command.backing is not None:
            raise NodeFailure(ErrorCode.STORAGE_UNREACHABLE, "the target stopped answering")
        return await real_format(command)
    monkeypatch.setattr(iscsi_domain, "_format", unreachable)

    async def dies_after(*args: Any) -> None:
        await real_remove(*args)
        if not removed.is_set():
            removed.set()
            await asyncio.Event().wait()  # the engine is gone before it records anything
    monkeypatch.setattr(leftovers, "_remove", dies_after)
    snapshot, job = await engine.act(snapshots.add_snapshot, vm_id, "unlucky")
    assert (await engine.job(job.id)).state == "failed"
    await asyncio.wait_for(removed.wait(), 60)
    await engine.worker.stop()
    # The first disk's new volume was asked for: its extent stays reserved until it is
    # removed; the second's, never asked for, was given back with the failure.
    assert await on_iscsi._free(engine) == free - 13 * MIB
    async with engine.session() as session:
        removal = (await session.execute(select(Job).where(
            Job.action == "storage.remove_volumes"))).scalar_one()
        assert removal.state == "running"
        removal.lease_until = removal.start_time  # its lease lapsed long ago

    ended = await engine.successor_ends(removal.id)
    assert ended.state == "done", ended.error
    assert await on_iscsi._chains(engine, lun, disk_ids) == before
    assert await on_iscsi._free(engine) == free
    assert "Removed 1 volume(s)" in await _cleaned(engine, snapshot, "san1")  # once


async def test_a_restore_failing_its_last_retry_on_nfs_leaves_only_recorded_volumes(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The first disk is restored (its new volume recorded), the second's new volume is
    half made when the storage stops answering: that one is removed, the first kept."""
    monkeypatch.setattr(queue, "MAX_BACKOFF_S", 0.05)
    vm_id, disk_ids, export = await on_nfs._nfs_vm(engine, monkeypatch, tmp_path / "nfs")
    taken = await on_nfs._take(engine, vm_id, "kept")
    real = nfs_domain.finish_volume

    def unreachable_for_second(storage: Any, relative: str, meta: dict[str, str]) -> None:
        if str(disk_ids[1]) in relative:
            raise NodeFailure(ErrorCode.STORAGE_UNREACHABLE, "the export stopped answering")
        real(storage, relative, meta)
    monkeypatch.setattr(nfs_domain, "finish_volume", unreachable_for_second)
    job = await engine.act(snapshots.restore_snapshot, vm_id, taken)
    ended = await engine.job(job.id)
    assert ended.state == "failed" and "stopped answering" in (ended.error or "")
    await engine.settled()
    chains = await on_nfs._chains(engine, export, disk_ids)
    assert all(len(chain) == 2 for chain in chains)
    assert [on_nfs._volumes(export, d) for d in disk_ids] == [{p.name for p in c}
                                                              for c in chains]
    async with engine.session() as session:
        assert (await session.execute(select(Lock))).all() == []
        events = (await session.execute(select(AuditEvent.description).where(
            AuditEvent.description.contains("left on storage domain(s) nfs1")))
                  ).scalars().all()
    assert len(events) == 1 and "Removed 1 volume(s)" in events[0]


async def test_a_snapshot_whose_chains_were_recorded_is_kept_when_storage_cannot_list_them(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The new volumes are made and the disks' chains recorded; only the LUN's metadata
    area cannot be written. The snapshot stays (its volumes are in the disks' chains and
    keep their extents), nothing is handed for removal, and it can be merged away later."""
    monkeypatch.setattr(queue, "MAX_BACKOFF_S", 0.05)
    vm_id, disk_ids, lun = await on_iscsi._iscsi_vm(engine, monkeypatch, tmp_path,
                                                    lun_size=128 * MIB)
    before = await on_iscsi._chains(engine, lun, disk_ids)
    free = await on_iscsi._free(engine)
    real = iscsi_domain.execute

    async def area_unwritable(command: Any) -> Any:
        if command.name == "storage.lun_metadata_write":
            raise NodeFailure(ErrorCode.STORAGE_UNREACHABLE, "the target stopped answering")
        return await real(command)
    monkeypatch.setattr(iscsi_domain, "execute", area_unwritable)
    snapshot, job = await engine.act(snapshots.add_snapshot, vm_id, "recorded")
    assert (await engine.job(job.id)).state == "failed"
    await engine.settled()
    async with engine.session() as session:
        row = await session.get(Snapshot, snapshot.id)
        assert row is not None and row.status == "ok"
        assert (await session.execute(select(Job).where(
            Job.action == "storage.remove_volumes"))).first() is None
        assert (await session.execute(select(Lock))).all() == []
    assert await on_iscsi._free(engine) == free - 2 * 13 * MIB  # the new volumes' extents

    monkeypatch.setattr(iscsi_domain, "execute", real)
    await on_iscsi._done(engine, await engine.act(snapshots.remove_snapshot, vm_id,
                                                  snapshot.id))
    assert await on_iscsi._chains(engine, lun, disk_ids) == before
    assert await on_iscsi._free(engine) == free
