"""Snapshots with memory over the fast lane: a running VM on an NFS domain (an export
kept as a local directory), its simulated host's QEMU writing the guest's state with the
disks' snapshot. The state lands on two raw volumes of the domain (oVirt's memory dump
and metadata volumes, with their `.meta`); a restore with memory makes the next start
resume the guest (its boot time, hence its uptime, is the saved one), once; removing the
snapshot removes the volumes. A down VM gets a disk-only snapshot (as oVirt), and so does
a VM whose state cannot be stored once its disks were switched; a VM whose
disks are on no shared domain is refused with nothing changed, and an engine that dies
while the state is copied leaves the job to a successor, which finishes it."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from overt.engine.api.memory_disks import memory_disk_view, memory_disks
from overt.engine.api.resources.snapshots import snapshot_view
from overt.engine.db.tables import (
    AuditEvent,
    Disk,
    ExtentReservation,
    Job,
    Lock,
    Snapshot,
    Step,
    StorageDomain,
    User,
    Vm,
)
from overt.engine.jobs.handlers import storage_domains
from overt.engine.jobs.handlers.storage_domains import is_image_leaf
from overt.engine.model.errors import Conflict
from overt.engine.model.status import VmStatus
from overt.engine.model.volume_labels import memory_disk_names, read_description
from overt.engine.queries.lookup import Ref
from overt.engine.queries.shared_storage import extent_of, split_volume_path
from overt.engine.services import devices, snapshots, vms
from overt.engine.services.inputs import DiskAttachmentInput, DiskInput
from overt.node import memory_states
from overt.node.errors import NodeFailure
from overt.node.simulated.hypervisor import saved_state
from overt.node.storage.nfs_domain import NfsDomains
from overt.protocol import ErrorCode
from overt.protocol.ovirt_metadata import parse_metadata
from overt.protocol.storage import DiskFormat, SharedVolumeDelete, StoredVolume
from tests.integration.engine.jobs import test_iscsi_snapshot_jobs as iscsi
from tests.integration.engine.jobs.test_nfs_snapshot_jobs import (
    _chains,
    _done,
    _nfs_vm,
    _running,
    _volumes,
)
from tests.support.loopback import LoopbackEngine

MIB = 1 << 20


async def _stopped(engine: LoopbackEngine, vm_id: uuid.UUID) -> None:
    await _done(engine, await engine.act(vms.stop_vm, vm_id))
    await engine.vm_reaches(vm_id, [VmStatus.DOWN])


async def _started(engine: LoopbackEngine, vm_id: uuid.UUID) -> Job:
    job = await engine.act(vms.start_vm, vm_id)
    await _done(engine, job)
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    return job


def _meta_file(volume: Path) -> Path:
    return volume.with_name(f"{volume.name}.meta")


def _meta(volume: Path) -> dict[str, str]:
    return parse_metadata(_meta_file(volume).read_text())


def _memory_files(export: Path, snapshot: Snapshot) -> list[Path]:
    return [export / p for p in (snapshot.memory_volume, snapshot.memory_metadata_volume)
            if p]


async def _snapshot(engine: LoopbackEngine, snapshot_id: uuid.UUID) -> Snapshot:
    async with engine.session() as session:
        row = await session.get(Snapshot, snapshot_id)
    assert row is not None
    return row


async def test_a_snapshot_with_memory_resumes_the_guest_after_a_restore_with_memory(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    vm_id, disk_ids, export = await _nfs_vm(engine, monkeypatch, tmp_path / "nfs")
    hyp = await _running(engine, vm_id)
    booted = hyp.guest_booted_at(vm_id)

    taken, job = await engine.act(snapshots.add_snapshot, vm_id, "with memory",
                                  persist_memory=True)
    await _done(engine, job)
    row = await _snapshot(engine, taken.id)
    vm = await engine.vm(vm_id)
    assert snapshot_view(vm, row)["persist_memorystate"] is True
    memory, metadata = _memory_files(export, row)
    state = saved_state(memory)
    assert state["vm_id"] == str(vm_id) and state["booted_at"] == booted
    assert "<domain>" in metadata.read_text()
    assert _meta(memory)["DISKTYPE"] == "MEMD" and _meta(metadata)["DISKTYPE"] == "MEMM"
    assert all(len(c) == 2 for c in await _chains(engine, export, disk_ids))
    async with engine.session() as session:
        steps = (await session.execute(select(Step.description).where(
            Step.job_id == job.id))).scalars().all()
        ended = await session.get(Job, job.id)
    assert any("guest paused 1 ms" in s for s in steps), steps
    assert ended is not None and ended.result["pause_ms"] == 1.0
    assert not list((engine.directory / "h1" / "images" / ".memory").glob("*"))  # dropped

    # The guest goes on, is stopped, and the snapshot comes back with its memory.
    await _stopped(engine, vm_id)
    await _done(engine, await engine.act(snapshots.restore_snapshot, vm_id, taken.id,
                                         restore_memory=True))
    assert (await engine.vm(vm_id)).resume_snapshot_id == taken.id
    start = await _started(engine, vm_id)
    assert hyp.guest_booted_at(vm_id) == booted  # resumed: its uptime goes on
    async with engine.session() as session:
        steps = (await session.execute(select(Step.description).where(
            Step.job_id == start.id))).scalars().all()
    assert any("from the memory of a snapshot" in s for s in steps)
    assert (await engine.vm(vm_id)).resume_snapshot_id is None

    # Once: the next start boots.
    await _stopped(engine, vm_id)
    await _started(engine, vm_id)
    assert hyp.guest_booted_at(vm_id) > booted

    # A restore without memory boots too.
    await _stopped(engine, vm_id)
    await _done(engine, await engine.act(snapshots.restore_snapshot, vm_id, taken.id))
    assert (await engine.vm(vm_id)).resume_snapshot_id is None

    # Removing the snapshot removes its memory volumes.
    await _done(engine, await engine.act(snapshots.remove_snapshot, vm_id, taken.id))
    assert not memory.exists() and not metadata.exists()
    assert not _meta_file(memory).exists()
    assert [len(_volumes(export, d)) for d in disk_ids] == [1, 1]


async def test_a_preview_with_memory_resumes_and_an_undo_forgets_it(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    vm_id, _disk_ids, _export = await _nfs_vm(engine, monkeypatch, tmp_path / "nfs")
    hyp = await _running(engine, vm_id)
    booted = hyp.guest_booted_at(vm_id)
    taken, job = await engine.act(snapshots.add_snapshot, vm_id, "m", persist_memory=True)
    await _done(engine, job)
    await _stopped(engine, vm_id)
    await _done(engine, await engine.act(snapshots.preview_snapshot, vm_id, taken.id,
                                         restore_memory=True))
    assert (await engine.vm(vm_id)).resume_snapshot_id == taken.id
    await _done(engine, await engine.act(snapshots.end_preview, vm_id, commit=False))
    assert (await engine.vm(vm_id)).resume_snapshot_id is None
    await _done(engine, await engine.act(snapshots.preview_snapshot, vm_id, taken.id,
                                         restore_memory=True))
    await _started(engine, vm_id)
    assert hyp.guest_booted_at(vm_id) == booted


async def test_a_down_vms_snapshot_asked_with_memory_is_taken_without_as_ovirt_does(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    vm_id, disk_ids, export = await _nfs_vm(engine, monkeypatch, tmp_path / "nfs")
    taken, job = await engine.act(snapshots.add_snapshot, vm_id, "down", persist_memory=True)
    await _done(engine, job)
    row = await _snapshot(engine, taken.id)
    assert row.memory_volume is None
    assert snapshot_view(await engine.vm(vm_id), row)["persist_memorystate"] is False
    assert [len(_volumes(export, d)) for d in disk_ids] == [2, 2]


async def test_a_memory_snapshot_of_a_vm_on_local_storage_is_refused_with_nothing_changed(
        engine: LoopbackEngine) -> None:
    await engine.add_host("h1")
    vm_id = await engine.add_vm("local")
    async with engine.session() as session:
        vm = await session.get(Vm, vm_id)
        user = await session.get(User, engine.user_id)
        assert vm is not None and user is not None
        await devices.add_disk_attachment(session, engine.jobs, vm, DiskAttachmentInput(
            disk=DiskInput(name="boot", provisioned_size=8 * MIB, format="cow",
                           storage_domain=Ref(name="h1-local")), bootable=True), user)
    await engine.settled()
    await _started(engine, vm_id)
    with pytest.raises(Conflict, match="is not on an NFS or iSCSI domain"):
        await engine.act(snapshots.add_snapshot, vm_id, "refused", persist_memory=True)
    async with engine.session() as session:
        assert (await session.execute(select(func.count()).select_from(Snapshot))
                ).scalar_one() == 0
        assert (await session.execute(select(Lock))).all() == []


async def test_a_memory_snapshot_the_host_refuses_leaves_nothing_behind(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    vm_id, disk_ids, export = await _nfs_vm(engine, monkeypatch, tmp_path / "nfs")
    hyp = await _running(engine, vm_id)
    before = await _chains(engine, export, disk_ids)

    async def refuses(*args: object) -> None:
        raise NodeFailure(ErrorCode.HYPERVISOR_ERROR, "QEMU could not write the state")
    monkeypatch.setattr(hyp, "memory_snapshot", refuses)
    taken, job = await engine.act(snapshots.add_snapshot, vm_id, "refused",
                                  persist_memory=True)
    ended = await engine.job(job.id)
    assert ended.state == "failed" and "could not write" in (ended.error or "")
    await engine.settled()  # the removal job of what it may have made
    assert await _chains(engine, export, disk_ids) == before
    assert [_volumes(export, d) for d in disk_ids] == [{c[0].name} for c in before]
    assert {p.name for p in (export / str(_domain(export))).glob("images/*")} == \
        {str(d) for d in disk_ids}
    async with engine.session() as session:
        assert await session.get(Snapshot, taken.id) is None
        assert (await session.execute(select(Lock))).all() == []


def _domain(export: Path) -> str:
    return next(p.name for p in export.iterdir() if (p / "dom_md").is_dir())


async def test_an_engine_that_dies_while_the_state_is_copied_leaves_it_to_a_successor(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The node took the snapshot and is copying the state when the engine dies: the
    snapshot is `locked`, its job `running`. The successor asks the node again (the same
    command), the copy ends, and the snapshot is `ok` with its memory; nothing locked."""
    vm_id, disk_ids, export = await _nfs_vm(engine, monkeypatch, tmp_path / "nfs")
    hyp = await _running(engine, vm_id)
    booted = hyp.guest_booted_at(vm_id)
    real, go_on, copying = memory_states.copies.copy_volume, asyncio.Event(), asyncio.Event()

    async def stalls_first(*args: object, **kwargs: object) -> object:
        if not copying.is_set():
            copying.set()
            await go_on.wait()
        return await real(*args, **kwargs)  # type: ignore[arg-type]
    monkeypatch.setattr(memory_states.copies, "copy_volume", stalls_first)
    taken, _job = await engine.act(snapshots.add_snapshot, vm_id, "interrupted",
                                   persist_memory=True)
    await asyncio.wait_for(copying.wait(), 60)
    await engine.worker.stop()
    async with engine.session() as session:
        job = (await session.execute(select(Job).where(Job.action == "vm.snapshot"))
               ).scalar_one()
        row = await session.get(Snapshot, taken.id)
        assert (job.state, row.status if row else None) == ("running", "locked")
        job.lease_until = job.start_time
    ended = await engine.successor_ends(job.id, go_on)
    assert ended.state == "done", ended.error
    row = await _snapshot(engine, taken.id)
    assert row.status == "ok"
    memory, _metadata = _memory_files(export, row)
    assert saved_state(memory)["booted_at"] == booted
    assert all(len(c) == 2 for c in await _chains(engine, export, disk_ids))
    async with engine.session() as session:
        assert (await session.execute(select(Lock))).all() == []


async def test_a_snapshot_with_memory_on_iscsi_holds_two_extents_until_it_is_removed(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """On an iSCSI domain the memory volumes are extents of the LUN the submission
    allocated (the guest's 256 MiB + 1/8 + 256 MiB, and 1 MiB for the XML): the state is
    written into its extent and read back from it for the resume; the domain's free space
    counts both until the snapshot is removed. A LUN without room refuses the snapshot
    with nothing changed."""
    vm_id, disk_ids, lun = await iscsi._iscsi_vm(engine, monkeypatch, tmp_path,
                                                 lun_size=1024 * MIB)
    hyp = await iscsi._running(engine, vm_id)
    booted = hyp.guest_booted_at(vm_id)
    free = await iscsi._free(engine)
    memory_bytes = snapshots.memory_volume_size(256)
    assert memory_bytes == (256 + 32 + 256) * MIB

    taken, job = await engine.act(snapshots.add_snapshot, vm_id, "san memory",
                                  persist_memory=True)
    await _done(engine, job)
    row = await _snapshot(engine, taken.id)
    extents = [extent_of(p) for p in (row.memory_volume, row.memory_metadata_volume)]
    assert [e[1] for e in extents if e] == [memory_bytes, MIB]
    chains = await iscsi._chains(engine, lun, disk_ids)
    assert await iscsi._free(engine) == free - 2 * 13 * MIB - memory_bytes - MIB
    # The LUN's metadata area lists both memory volumes (raw extents, vdsm's DISKTYPE,
    # the snapshot), so whoever reads it back knows what holds those extents.
    listed = {k.removeprefix("VOL_"): v.split(",") for k, v in lun.metadata().items()
              if k.startswith("VOL_") and len(v.split(",")) > 8}
    assert {v[0]: (int(v[1]), int(v[2]), v[3], v[7], v[8], v[9]) for v in listed.values()} \
        == {str(split_volume_path(p)[0]): (e[0], e[1], "RAW", "LEAF", kind, str(taken.id))
            for p, e, kind in zip((row.memory_volume, row.memory_metadata_volume), extents,
                                  ("MEMD", "MEMM"), strict=True) if p and e}
    # named as the API shows the memory disks (alias and description), for an import
    vm = await engine.vm(vm_id)
    assert {tuple(read_description(v[5]).values()) for v in listed.values()} == {
        memory_disk_names(vm.name, vm.id, "san memory", kind) for kind in ("MEMD", "MEMM")}
    offset = extents[0][0] if extents[0] else 0

    def state_head() -> bytes:  # the first 4 KiB of the memory extent (not the whole LUN)
        with lun.path.open("rb") as f:
            f.seek(offset)
            return f.read(4096)
    state = await asyncio.to_thread(state_head)
    assert json.loads(state.rstrip(b"\0"))["vm_id"] == str(vm_id)
    async with engine.session() as session:
        assert (await session.execute(select(func.count()).select_from(ExtentReservation))
                ).scalar() == 0

    await _stopped(engine, vm_id)
    await _done(engine, await engine.act(snapshots.restore_snapshot, vm_id, taken.id,
                                         restore_memory=True))
    await _started(engine, vm_id)
    assert hyp.guest_booted_at(vm_id) == booted
    await _stopped(engine, vm_id)
    await _done(engine, await engine.act(snapshots.remove_snapshot, vm_id, taken.id))
    assert await iscsi._chains(engine, lun, disk_ids) == [[c[0]] for c in chains]
    assert await iscsi._free(engine) == free
    assert not [v for k, v in lun.metadata().items()
                if k.startswith("VOL_") and len(v.split(",")) > 8]  # no longer listed


async def test_a_snapshot_with_memory_is_refused_when_the_lun_has_no_room_for_it(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    vm_id, _disk_ids, _lun = await iscsi._iscsi_vm(engine, monkeypatch, tmp_path,
                                                   lun_size=128 * MIB)
    await iscsi._running(engine, vm_id)
    free = await iscsi._free(engine)
    with pytest.raises(Conflict, match="no free extent"):
        await engine.act(snapshots.add_snapshot, vm_id, "too big", persist_memory=True)
    assert await iscsi._free(engine) == free
    async with engine.session() as session:
        assert (await session.execute(select(func.count()).select_from(Snapshot))
                ).scalar_one() == 0
        assert (await session.execute(select(func.count()).select_from(ExtentReservation))
                ).scalar() == 0
        assert (await session.execute(select(Lock))).all() == []


async def test_an_engine_that_dies_while_the_memory_volumes_are_deleted_leaves_it_to_a_successor(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The removal merged the disks and is deleting the memory volumes when the engine
    dies: the snapshot is still listed (`locked`). The successor deletes the volumes, then
    the snapshot; nothing is left on storage and nothing locked."""
    vm_id, disk_ids, export = await _nfs_vm(engine, monkeypatch, tmp_path / "nfs")
    await _running(engine, vm_id)
    taken, job = await engine.act(snapshots.add_snapshot, vm_id, "m", persist_memory=True)
    await _done(engine, job)
    row = await _snapshot(engine, taken.id)
    files = _memory_files(export, row)
    memory_image = files[0].parent.name
    await _stopped(engine, vm_id)
    real, go_on, deleting = NfsDomains._volume_delete, threading.Event(), threading.Event()

    def stalls_first(self: NfsDomains, command: SharedVolumeDelete) -> object:
        if str(command.image_id) == memory_image and not deleting.is_set():
            deleting.set()
            go_on.wait(60)
        return real(self, command)
    monkeypatch.setattr(NfsDomains, "_volume_delete", stalls_first)
    await engine.act(snapshots.remove_snapshot, vm_id, taken.id)
    await asyncio.to_thread(deleting.wait, 60)
    await engine.worker.stop()
    async with engine.session() as session:
        removal = (await session.execute(select(Job).where(
            Job.action == "vm.snapshot_remove"))).scalar_one()
        listed = await session.get(Snapshot, taken.id)
        assert (removal.state, listed.status if listed else None) == ("running", "locked")
        removal.lease_until = removal.start_time
    ended = await engine.successor_ends(removal.id, go_on)
    assert ended.state == "done", ended.error
    assert not any(f.exists() or _meta_file(f).exists() for f in files)
    assert [len(_volumes(export, d)) for d in disk_ids] == [1, 1]
    async with engine.session() as session:
        assert await session.get(Snapshot, taken.id) is None
        assert (await session.execute(select(Lock))).all() == []


async def test_an_import_adopts_memory_volumes_as_memory_disks_no_vm_can_attach(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The memory volumes of a snapshot on an NFS export, as the node wrote them (`.meta`
    DISKTYPE MEMD and MEMM), read back by a domain's import: it brings no snapshot, so
    each becomes a disk of oVirt's memory content type (not a data disk, not a forgotten
    volume), which attaching to a VM refuses and its owner may remove."""
    vm_id, _disk_ids, export = await _nfs_vm(engine, monkeypatch, tmp_path / "nfs")
    await _running(engine, vm_id)
    taken, job = await engine.act(snapshots.add_snapshot, vm_id, "kept", persist_memory=True)
    await _done(engine, job)
    row = await _snapshot(engine, taken.id)
    found = []
    for path, volume in zip(_memory_files(export, row),
                            (row.memory_volume, row.memory_metadata_volume), strict=True):
        assert volume is not None
        image_id, volume_id = split_volume_path(volume)
        found.append(StoredVolume(image_id=image_id, volume_id=volume_id,
                                  metadata=_meta(path), format=DiskFormat.RAW,
                                  virtual_size=path.stat().st_size,
                                  actual_size=path.stat().st_size))
    async with engine.session() as session:
        domain = await session.get(StorageDomain, row.memory_domain_id)
        assert domain is not None
        assert all(is_image_leaf(v, found) for v in found)
        for volume in found:
            assert await storage_domains._adopt(session, domain, volume)
    await _stopped(engine, vm_id)
    async with engine.session() as session:
        adopted = {str(d.id): (d.content_type, d.format, d.name, d.description,
                               d.provisioned_size, d.actual_size)
                   for d in (await session.execute(select(Disk).where(
                       Disk.id.in_([v.image_id for v in found])))).scalars()}
        shown = [memory_disk_view(m) for m in await memory_disks(
            session, domain_id=row.memory_domain_id)]
    # The import shows each memory disk as the engine that took the snapshot shows it:
    # the same alias, description and size (the `.meta` keeps them; the NFS volume is
    # grown to the size the engine allocated).
    assert adopted == {view["id"]: (view["content_type"], view["format"], view["alias"],
                                    view["description"], view["provisioned_size"],
                                    view["actual_size"]) for view in shown}
    assert [v.virtual_size for v in found] == [snapshots.memory_volume_size(256), MIB]
    assert adopted[str(found[0].image_id)][2] == \
        f"{(await engine.vm(vm_id)).name}_kept_Memory dump"
    async with engine.session() as session:
        vm = await session.get(Vm, vm_id)
        user = await session.get(User, engine.user_id)
        assert vm is not None and user is not None
        with pytest.raises(Conflict, match="holds a snapshot's saved memory"):
            await devices.add_disk_attachment(session, engine.jobs, vm, DiskAttachmentInput(
                disk_ref=Ref(id=found[0].image_id)), user)


async def test_a_snapshot_whose_memory_cannot_be_stored_keeps_its_disks_and_says_why(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The node took the snapshot (the disks write their new volumes from then on) but
    could never copy the state to its volume (the export stopped answering at every
    try): the snapshot stands as a disk-only one, the chains are recorded (nothing the
    guest writes is lost), the memory volumes and the node's staged copy are gone, and a
    warning says why."""
    vm_id, disk_ids, export = await _nfs_vm(engine, monkeypatch, tmp_path / "nfs")
    await _running(engine, vm_id)
    staging = engine.directory / "h1" / "images" / ".memory"  # the node's storage dir
    real = memory_states.copies.copy_volume
    tries: list[list[str]] = []

    async def export_gone(command: object, *args: object, **kwargs: object) -> object:
        if str(getattr(command, "source", "")).find(".state") >= 0:
            tries.append(sorted(p.name for p in staging.glob("*")))
            raise NodeFailure(ErrorCode.STORAGE_UNREACHABLE, "the export stopped answering")
        return await real(command, *args, **kwargs)  # type: ignore[arg-type]
    monkeypatch.setattr(memory_states.copies, "copy_volume", export_gone)
    monkeypatch.setattr(memory_states, "STORE_RETRY_S", (0.0, 0.0))
    taken, job = await engine.act(snapshots.add_snapshot, vm_id, "lost",
                                  persist_memory=True)
    ended = await engine.job(job.id)
    assert ended.state == "done", ended.error
    assert len(tries) == 3 and all(len(t) == 2 for t in tries)  # kept while it tried

    row = await _snapshot(engine, taken.id)
    assert row.status == "ok" and not _memory_files(export, row)
    assert snapshot_view(await engine.vm(vm_id), row)["persist_memorystate"] is False
    assert all(len(c) == 2 for c in await _chains(engine, export, disk_ids))  # recorded
    assert not list(staging.glob("*"))
    async with engine.session() as session:
        said = (await session.execute(select(AuditEvent.description).where(
            AuditEvent.code == 9678))).scalars().all()
        reservations = (await session.execute(select(func.count()).select_from(
            ExtentReservation))).scalar_one()
    assert said == ["Snapshot 'lost' of VM nfs-snappy was taken without its memory: its memory "
                    "could not be stored on its volume: the export stopped answering. Its "
                    "disks are in the snapshot; take another with memory to save it."]
    assert reservations == 0
    assert [m for m in export.rglob("*.meta")  # the memory volumes were removed
            if parse_metadata(m.read_text()).get("DISKTYPE") in ("MEMD", "MEMM")] == []
    assert (await engine.vm(vm_id)).status == VmStatus.UP
