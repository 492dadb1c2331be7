"""Snapshots of a VM whose disks are on an NFS domain, over the fast lane: the node's
NFS code runs on an export kept as a local directory (oVirt's layout, `.meta` files) and
qemu-img on the real volumes. The chain the database records is the chain on storage
and the one the `.meta` files describe; taken, previewed, restored and merged on a down
VM, taken and merged live on a running one (the simulated host's QEMU acting on the
volumes the engine made), the data is what the user expects; refused requests change
nothing; an engine that dies while a snapshot's volume is half made, or after QEMU
merged a volume but before its `.meta` followed, leaves the job to a successor, which
finishes it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from overt.engine.db.tables import Disk, Job, Lock, Snapshot, StorageDomain, User, Vm
from overt.engine.jobs.handlers import snapshots as snapshot_handlers
from overt.engine.model.errors import Conflict, NotFound
from overt.engine.model.status import StorageDomainStatus, StorageType, VmStatus
from overt.engine.queries.lookup import Ref
from overt.engine.queries.snapshot_chains import disk_chain
from overt.engine.queries.vm_spec import build_vm_spec
from overt.engine.services import devices, snapshots, vms
from overt.engine.services.inputs import DiskAttachmentInput, DiskInput
from overt.node.errors import NodeFailure
from overt.node.simulated.hypervisor import SimulatedHypervisor
from overt.node.storage import nfs_domain
from overt.protocol import ErrorCode
from overt.protocol.ovirt_metadata import parse_metadata, render_metadata
from overt.protocol.vm import NfsSource
from tests.support.export_directory import ExportDirectory, use_export_directories
from tests.support.loopback import LoopbackEngine

MIB = 1 << 20
TOP = "00000000-0000-0000-0000-000000000000"


def _storage_chain(path: Path) -> list[str]:
    out = subprocess.run(["qemu-img", "info", "-U", "--backing-chain", "--output=json",
                          str(path)], check=True, capture_output=True, text=True).stdout
    return [layer["filename"] for layer in reversed(json.loads(out))]


def _write(path: Path, fmt: str, command: str) -> None:
    subprocess.run(["qemu-io", "-f", fmt, "-c", command, str(path)], check=True,
                   capture_output=True)


def _reads(path: Path, fmt: str, pattern: int, offset: int) -> bool:
    done = subprocess.run(["qemu-io", "-r", "-f", fmt, "-c", f"read -P {pattern} {offset} 64k",
                           str(path)], capture_output=True, text=True, check=False)
    return done.returncode == 0 and "Pattern verification failed" not in done.stdout


def _meta(volume: Path) -> dict[str, str]:
    return parse_metadata(Path(f"{volume}.meta").read_text())


async def _nfs_vm(engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, root: Path
                  ) -> tuple[uuid.UUID, list[uuid.UUID], Path]:
    """A down VM with a qcow2 and a raw disk on an active NFS domain; the export's path."""
    use_export_directories(monkeypatch, root)
    await engine.add_host("h1")
    sd_id = uuid.uuid4()
    async with engine.session() as session:
        host_id = (await session.execute(select(StorageDomain.host_id))).scalar_one()
        session.add(StorageDomain(id=sd_id, name="nfs1", storage_type=StorageType.NFS.value,
                                  address="10.9.9.9", path="/export", host_id=host_id,
                                  storage_uuid=sd_id, status=StorageDomainStatus.ACTIVE.value))
    export = ExportDirectory("10.9.9.9", "/export")
    await asyncio.to_thread(export.makedirs, f"/{sd_id}/dom_md")
    await asyncio.to_thread(export.write_bytes, f"/{sd_id}/dom_md/metadata",
                            render_metadata({"SDUUID": str(sd_id)}, checksum=True, eof=False))
    vm_id = await engine.add_vm("nfs-snappy")
    disk_ids = []
    for name, fmt in (("boot", "cow"), ("data", "raw")):
        async with engine.session() as session:
            vm = await session.get(Vm, vm_id)
            user = await session.get(User, engine.user_id)
            assert vm is not None and user is not None
            attachment = await devices.add_disk_attachment(
                session, engine.jobs, vm, DiskAttachmentInput(
                    disk=DiskInput(name=name, provisioned_size=8 * MIB, format=fmt,
                                   storage_domain=Ref(name="nfs1")),
                    bootable=name == "boot"), user)
            disk_ids.append(attachment.disk_id)
    await engine.settled()
    return vm_id, disk_ids, export.base


async def _chains(engine: LoopbackEngine, export: Path, disk_ids: list[uuid.UUID]
                  ) -> list[list[Path]]:
    """Per disk, its chain (base first) as the database records it, checked against the
    chain qemu-img reads on storage and the parents the `.meta` files name."""
    found = []
    async with engine.session() as session:
        for disk_id in disk_ids:
            disk = await session.get(Disk, disk_id)
            assert disk is not None
            recorded = [export / p for p in await disk_chain(session, disk)]
            assert [str(p) for p in recorded] == await asyncio.to_thread(
                _storage_chain, recorded[-1])
            parents = [TOP] + [p.name for p in recorded[:-1]]
            assert [_meta(p)["PUUID"] for p in recorded] == parents
            assert [_meta(p)["VOLTYPE"] for p in recorded] == \
                ["INTERNAL"] * (len(recorded) - 1) + ["LEAF"]
            assert {p.parent.name for p in recorded} == {str(disk_id)}  # the disk's image
            found.append(recorded)
    return found


def _volumes(export: Path, disk_id: uuid.UUID) -> set[str]:
    image = next(export.glob(f"*/images/{disk_id}"))
    return {p.name for p in image.iterdir() if "." not in p.name}


async def _done(engine: LoopbackEngine, job: Job) -> None:
    ended = await engine.job(job.id)
    assert ended.state == "done", ended.error


async def _take(engine: LoopbackEngine, vm_id: uuid.UUID, description: str) -> uuid.UUID:
    snapshot, job = await engine.act(snapshots.add_snapshot, vm_id, description)
    await _done(engine, job)
    return snapshot.id


async def test_snapshots_of_a_down_vm_on_nfs_are_taken_previewed_restored_and_merged(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    vm_id, disk_ids, export = await _nfs_vm(engine, monkeypatch, tmp_path / "nfs")
    [[boot], [data]] = await _chains(engine, export, disk_ids)
    await asyncio.to_thread(_write, boot, "qcow2", "write -P 0x11 0 64k")
    await asyncio.to_thread(_write, data, "raw", "write -P 0x11 0 64k")

    first = await _take(engine, vm_id, "first")
    chains = await _chains(engine, export, disk_ids)
    assert [c[0] for c in chains] == [boot, data] and all(len(c) == 2 for c in chains)
    for chain in chains:
        await asyncio.to_thread(_write, chain[-1], "qcow2", "write -P 0x22 64k 64k")
    second = await _take(engine, vm_id, "second")
    chains = await _chains(engine, export, disk_ids)
    for chain in chains:
        assert len(chain) == 3
        await asyncio.to_thread(_write, chain[-1], "qcow2", "write -P 0x33 128k 64k")
    # The VM runs its chain from NFS: libvirt is given every volume, nearest first.
    async with engine.session() as session:
        spec = await build_vm_spec(session, await engine.vm(vm_id), vnc_password="secret")
    layers = [layer.source for layer in spec.disks[0].chain]
    assert [s.path for s in layers if isinstance(s, NfsSource)] == [
        f"/export/{p.relative_to(export)}" for p in reversed(chains[0][:-1])]

    # Preview the first snapshot, then undo: the chain and its data come back.
    before = await _chains(engine, export, disk_ids)
    await _done(engine, await engine.act(snapshots.preview_snapshot, vm_id, first))
    previewing = await _chains(engine, export, disk_ids)
    assert all(len(c) == 2 for c in previewing) and previewing[0][0] == boot
    assert await asyncio.to_thread(_reads, previewing[0][-1], "qcow2", 0x11, 0)
    assert not await asyncio.to_thread(_reads, previewing[0][-1], "qcow2", 0x22, 64 * 1024)
    await _done(engine, await engine.act(snapshots.end_preview, vm_id, commit=False))
    assert await _chains(engine, export, disk_ids) == before
    assert await asyncio.to_thread(_reads, before[0][-1], "qcow2", 0x33, 128 * 1024)

    # Restore the second snapshot: what was written after it is gone, its volumes too.
    await _done(engine, await engine.act(snapshots.restore_snapshot, vm_id, second))
    restored = await _chains(engine, export, disk_ids)
    assert all(len(c) == 3 for c in restored)
    assert await asyncio.to_thread(_reads, restored[0][-1], "qcow2", 0x22, 64 * 1024)
    assert not await asyncio.to_thread(_reads, restored[0][-1], "qcow2", 0x33, 128 * 1024)
    assert _volumes(export, disk_ids[0]) == {p.name for p in restored[0]}
    await asyncio.to_thread(_write, restored[1][-1], "qcow2", "write -P 0x44 128k 64k")

    # Removing both snapshots merges every volume into the base, which is a leaf again.
    await _done(engine, await engine.act(snapshots.remove_snapshot, vm_id, first))
    assert all(len(c) == 2 for c in await _chains(engine, export, disk_ids))
    await _done(engine, await engine.act(snapshots.remove_snapshot, vm_id, second))
    assert await _chains(engine, export, disk_ids) == [[boot], [data]]
    for path, fmt in ((boot, "qcow2"), (data, "raw")):
        assert await asyncio.to_thread(_reads, path, fmt, 0x11, 0)
        assert await asyncio.to_thread(_reads, path, fmt, 0x22, 64 * 1024)
    assert await asyncio.to_thread(_reads, data, "raw", 0x44, 128 * 1024)
    await asyncio.to_thread(subprocess.run, ["qemu-img", "check", "-U", str(boot)], check=True,
                            capture_output=True)
    assert [_volumes(export, d) for d in disk_ids] == [{boot.name}, {data.name}]
    async with engine.session() as session:
        assert (await session.execute(select(func.count()).select_from(Snapshot))).scalar() == 0


async def test_nfs_snapshot_requests_that_cannot_be_served_change_nothing(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    vm_id, disk_ids, export = await _nfs_vm(engine, monkeypatch, tmp_path / "nfs")
    taken = await _take(engine, vm_id, "kept")
    before = await _chains(engine, export, disk_ids)

    async def counts() -> tuple[int, int]:
        async with engine.session() as session:
            return ((await session.execute(select(func.count()).select_from(Job))).scalar_one(),
                    (await session.execute(select(func.count()).select_from(Snapshot))
                     ).scalar_one())
    counted = await counts()
    async with engine.session() as session:
        vm = await session.get(Vm, vm_id)
        assert vm is not None
        vm.status = VmStatus.UP.value  # QEMU now holds the volumes: oVirt wants it down
    with pytest.raises(Conflict, match="shut it down first"):
        await engine.act(snapshots.restore_snapshot, vm_id, taken)
    with pytest.raises(Conflict, match="shut it down first"):
        await engine.act(snapshots.preview_snapshot, vm_id, taken)
    async with engine.session() as session:
        vm = await session.get(Vm, vm_id)
        assert vm is not None
        vm.status = VmStatus.DOWN.value
    with pytest.raises(NotFound, match="has no snapshot"):
        await engine.act(snapshots.preview_snapshot, vm_id, uuid.uuid4())
    with pytest.raises(NotFound):
        await engine.act(snapshots.preview_snapshot, uuid.uuid4(), taken)
    assert await counts() == counted
    assert await _chains(engine, export, disk_ids) == before


async def test_an_engine_that_dies_while_a_snapshot_volume_is_made_leaves_it_to_a_successor(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The volume is made on storage but has no `.meta` yet when the engine dies: the
    snapshot is `locked`, its job `running`. The successor makes the volume again, records
    the chain, and nothing stays locked."""
    vm_id, disk_ids, export = await _nfs_vm(engine, monkeypatch, tmp_path / "nfs")
    real, go_on, made = nfs_domain.finish_volume, asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def stalls_first(storage: object, relative: str, meta: dict[str, str]) -> None:
        if not made.is_set():
            loop.call_soon_threadsafe(made.set)
            asyncio.run_coroutine_threadsafe(go_on.wait(), loop).result(timeout=60)
        real(storage, relative, meta)  # type: ignore[arg-type]
    monkeypatch.setattr(nfs_domain, "finish_volume", stalls_first)
    snapshot, _job = await engine.act(snapshots.add_snapshot, vm_id, "interrupted")
    await asyncio.wait_for(made.wait(), 60)
    await engine.worker.stop()  # the engine dies between making the volume and its .meta
    async with engine.session() as session:
        job = (await session.execute(select(Job).where(Job.action == "vm.snapshot"))
               ).scalar_one()
        row = await session.get(Snapshot, snapshot.id)
        assert (job.state, row.status if row else None) == ("running", "locked")
        job.lease_until = job.start_time  # its lease lapsed long ago

    # The successor starts later (seconds, in a real crash): the volume it asks for again
    # is the same command under the same key, whatever the clock says now.
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 7)
    ended = await engine.successor_ends(job.id, go_on)
    assert ended.state == "done", ended.error
    chains = await _chains(engine, export, disk_ids)
    assert all(len(c) == 2 for c in chains)
    async with engine.session() as session:
        row = await session.get(Snapshot, snapshot.id)
        assert row is not None and row.status == "ok"
        assert (await session.execute(select(Lock))).all() == []
    for disk_id, chain in zip(disk_ids, chains, strict=True):
        assert _volumes(export, disk_id) == {p.name for p in chain}


async def _running(engine: LoopbackEngine, vm_id: uuid.UUID) -> SimulatedHypervisor:
    """The VM started on its host; that host's hypervisor (its QEMU's live chains)."""
    start = await engine.act(vms.start_vm, vm_id)
    assert (await engine.job(start.id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    hyp = engine.hosts["h1"].hypervisor
    assert isinstance(hyp, SimulatedHypervisor)
    return hyp


def _written(hyp: SimulatedHypervisor, vm_id: uuid.UUID, export: Path) -> list[Path]:
    """The volumes the running VM's QEMU writes, as files of the export."""
    return sorted(export / Path(chain[0]).relative_to("/export")
                  for chain in hyp._vms[vm_id].chains)


async def test_a_running_vms_snapshots_on_nfs_are_taken_and_merged_live(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    vm_id, disk_ids, export = await _nfs_vm(engine, monkeypatch, tmp_path / "nfs")
    [[boot], [data]] = await _chains(engine, export, disk_ids)
    await asyncio.to_thread(_write, boot, "qcow2", "write -P 0x11 0 64k")
    await asyncio.to_thread(_write, data, "raw", "write -P 0x11 0 64k")
    hyp = await _running(engine, vm_id)

    first = await _take(engine, vm_id, "first")
    chains = await _chains(engine, export, disk_ids)
    assert [c[0] for c in chains] == [boot, data] and all(len(c) == 2 for c in chains)
    assert _written(hyp, vm_id, export) == sorted(c[-1] for c in chains)
    for chain in chains:
        await asyncio.to_thread(_write, chain[-1], "qcow2", "write -P 0x22 64k 64k")
    second = await _take(engine, vm_id, "second")
    chains = await _chains(engine, export, disk_ids)
    assert all(len(c) == 3 for c in chains)
    for chain in chains:
        await asyncio.to_thread(_write, chain[-1], "qcow2", "write -P 0x33 128k 64k")
    with pytest.raises(Conflict, match="shut it down first"):  # oVirt restores a down VM
        await engine.act(snapshots.restore_snapshot, vm_id, first)

    # The first snapshot's volume absorbs the one over it, which QEMU reads but does not
    # write (a block commit); the active volume's .meta names its new parent.
    await _done(engine, await engine.act(snapshots.remove_snapshot, vm_id, first))
    merged = await _chains(engine, export, disk_ids)
    assert [c[0] for c in merged] == [boot, data] and all(len(c) == 2 for c in merged)
    assert [c[-1] for c in merged] == [c[-1] for c in chains]
    # The second's absorbs the active volume (an active commit, then the pivot to it):
    # the base volume is the image's leaf again.
    await _done(engine, await engine.act(snapshots.remove_snapshot, vm_id, second))
    assert await _chains(engine, export, disk_ids) == [[boot], [data]]
    assert _written(hyp, vm_id, export) == sorted([boot, data])
    for path, fmt in ((boot, "qcow2"), (data, "raw")):
        for pattern, offset in ((0x11, 0), (0x22, 64 * 1024), (0x33, 128 * 1024)):
            assert await asyncio.to_thread(_reads, path, fmt, pattern, offset)
    await asyncio.to_thread(subprocess.run, ["qemu-img", "check", "-U", str(boot)], check=True,
                            capture_output=True)
    assert [_volumes(export, d) for d in disk_ids] == [{boot.name}, {data.name}]
    assert (await engine.vm(vm_id)).status == VmStatus.UP


async def test_a_live_snapshot_the_host_refuses_leaves_the_chains_as_they_were(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The engine made the new volumes (their `.meta` made the active ones INTERNAL);
    QEMU refuses them: they are removed and the active volumes are leaves again."""
    vm_id, disk_ids, export = await _nfs_vm(engine, monkeypatch, tmp_path / "nfs")
    hyp = await _running(engine, vm_id)
    before = await _chains(engine, export, disk_ids)

    async def refuses(vm: uuid.UUID, disks: object) -> None:
        raise NodeFailure(ErrorCode.HYPERVISOR_ERROR, "QEMU could not open the new volume")
    monkeypatch.setattr(hyp, "disk_snapshot", refuses)
    snapshot, job = await engine.act(snapshots.add_snapshot, vm_id, "refused")
    ended = await engine.job(job.id)
    assert ended.state == "failed" and "could not open" in (ended.error or "")
    assert await _chains(engine, export, disk_ids) == before
    assert [_volumes(export, d) for d in disk_ids] == [{c[0].name} for c in before]
    async with engine.session() as session:
        assert await session.get(Snapshot, snapshot.id) is None
        assert (await session.execute(select(Lock))).all() == []


async def test_a_live_snapshot_whose_second_volume_cannot_be_made_removes_the_first(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The first disk's new volume is made (its `.meta` made the active one INTERNAL), the
    second's is refused half made: the snapshot is not taken, both new volumes are gone
    and the active volumes are leaves again, as before."""
    vm_id, disk_ids, export = await _nfs_vm(engine, monkeypatch, tmp_path / "nfs")
    hyp = await _running(engine, vm_id)
    before = await _chains(engine, export, disk_ids)
    real, finished = nfs_domain.finish_volume, []

    def refuses_second(storage: object, relative: str, meta: dict[str, str]) -> None:
        finished.append(relative)
        if len(finished) == 2:
            raise NodeFailure(ErrorCode.BAD_REQUEST, "the export refused the .meta file")
        real(storage, relative, meta)  # type: ignore[arg-type]
    monkeypatch.setattr(nfs_domain, "finish_volume", refuses_second)
    snapshot, job = await engine.act(snapshots.add_snapshot, vm_id, "half made")
    ended = await engine.job(job.id)
    assert ended.state == "failed" and "refused the .meta" in (ended.error or "")
    assert await _chains(engine, export, disk_ids) == before  # each a LEAF again
    assert [_volumes(export, d) for d in disk_ids] == [{c[0].name} for c in before]
    assert _written(hyp, vm_id, export) == sorted(c[0] for c in before)
    async with engine.session() as session:
        assert await session.get(Snapshot, snapshot.id) is None
        assert (await session.execute(select(Lock))).all() == []


async def test_an_engine_that_dies_after_a_live_merge_leaves_the_metadata_to_a_successor(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """QEMU merged the active volume into the snapshot's and pivoted to it, and the engine
    dies before the `.meta` files follow: the successor finishes the removal (the merge
    already done is recognised in the live chain) and nothing stays locked."""
    vm_id, disk_ids, export = await _nfs_vm(engine, monkeypatch, tmp_path / "nfs")
    hyp = await _running(engine, vm_id)
    taken = await _take(engine, vm_id, "interrupted")
    chains = await _chains(engine, export, disk_ids)
    await asyncio.to_thread(_write, chains[0][-1], "qcow2", "write -P 0x55 0 64k")
    real, go_on, merged = nfs_domain.update_meta, asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def stalls_first(storage: object, relative: str, changes: dict[str, str]) -> None:
        if not merged.is_set():
            loop.call_soon_threadsafe(merged.set)
            asyncio.run_coroutine_threadsafe(go_on.wait(), loop).result(timeout=60)
        real(storage, relative, changes)  # type: ignore[arg-type]
    monkeypatch.setattr(nfs_domain, "update_meta", stalls_first)
    job_of_removal = await engine.act(snapshots.remove_snapshot, vm_id, taken)
    await asyncio.wait_for(merged.wait(), 60)
    await engine.worker.stop()  # QEMU writes a base now; its .meta still says INTERNAL
    assert set(_written(hyp, vm_id, export)) & {c[0] for c in chains}
    async with engine.session() as session:
        job = await session.get(Job, job_of_removal.id)
        row = await session.get(Snapshot, taken)
        assert job is not None and (job.state, row.status if row else None) == (
            "running", "locked")
        job.lease_until = job.start_time

    ended = await engine.successor_ends(job.id, go_on)
    assert ended.state == "done", ended.error
    final = await _chains(engine, export, disk_ids)  # each base a LEAF again
    assert final == [[c[0]] for c in chains]
    assert await asyncio.to_thread(_reads, final[0][0], "qcow2", 0x55, 0)
    assert [_volumes(export, d) for d in disk_ids] == [{c[0].name} for c in chains]
    async with engine.session() as session:
        assert await session.get(Snapshot, taken) is None
        assert (await session.execute(select(Lock))).all() == []


async def test_an_engine_that_dies_after_recording_a_merge_leaves_no_merged_volume(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The merge is done and the disk's new chain recorded when the engine dies, before the
    merged volume is deleted: the successor deletes it, so storage holds no volume that no
    chain names."""
    vm_id, disk_ids, export = await _nfs_vm(engine, monkeypatch, tmp_path / "nfs")
    taken = await _take(engine, vm_id, "interrupted")
    before = await _chains(engine, export, disk_ids)
    real, recorded = snapshot_handlers.delete_volumes, asyncio.Event()

    async def dies_first(*args: Any, **kwargs: Any) -> None:
        if not recorded.is_set():
            recorded.set()
            await asyncio.Event().wait()  # the engine is gone before it deletes anything
        await real(*args, **kwargs)
    monkeypatch.setattr(snapshot_handlers, "delete_volumes", dies_first)
    job_of_removal = await engine.act(snapshots.remove_snapshot, vm_id, taken)
    await asyncio.wait_for(recorded.wait(), 60)
    await engine.worker.stop()
    async with engine.session() as session:
        job = await session.get(Job, job_of_removal.id)
        assert job is not None and job.state == "running"
        job.lease_until = job.start_time
    first = await _chains(engine, export, [disk_ids[0]])  # recorded: the top is merged
    assert first == [[before[0][0]]]
    assert _volumes(export, disk_ids[0]) == {p.name for p in before[0]}  # not deleted yet

    ended = await engine.successor_ends(job_of_removal.id)
    assert ended.state == "done", ended.error
    final = await _chains(engine, export, disk_ids)
    assert final == [[c[0]] for c in before]
    assert [_volumes(export, d) for d in disk_ids] == [{c[0].name} for c in before]
    assert not any(export.glob(f"*/images/{disk_ids[0]}/{before[0][1].name}*"))
    async with engine.session() as session:
        assert await session.get(Snapshot, taken) is None
        assert (await session.execute(select(Lock))).all() == []
