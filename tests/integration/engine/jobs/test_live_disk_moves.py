"""Live storage migration over the fast lane: the disk of a running VM moved between an
NFS export and an iSCSI LUN (both simulated by files) while the VM stays `up`; the
simulated node models libvirt's block copy (a mirror ready after a few reads, a pivot
that writes the data to the target with qemu-img). What users see (statuses, steps,
events, locks, refusals), what lies on storage and where the VM writes are checked,
with failures and an engine that dies mid-mirror."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from overt.engine import audit
from overt.engine.db.tables import (
    Disk,
    ExtentReservation,
    Job,
    Lock,
    Step,
    StorageDomain,
    User,
    Vm,
)
from overt.engine.jobs import queue
from overt.engine.jobs.handlers import live_disk_moves
from overt.engine.model.errors import Conflict
from overt.engine.model.status import DiskStatus, VmStatus
from overt.engine.queries.lookup import Ref
from overt.engine.queries.vm_spec import build_vm_spec
from overt.engine.services import disk_moves, vms
from overt.node.errors import NodeFailure
from overt.protocol import ErrorCode
from overt.protocol.host import VmState
from overt.protocol.vm import IscsiSource, NfsSource
from tests.integration.engine.jobs.test_disk_moves import (
    _disk,
    _domains,
    _events,
    _file,
    _no_locks,
    _reads,
    _row,
    _state,
)
from tests.support.loopback import LoopbackEngine


@pytest.fixture(autouse=True)
def _quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_disk_moves, "POLL_S", 0.02)
    monkeypatch.setattr(queue, "MAX_BACKOFF_S", 0.05)


async def _running(engine: LoopbackEngine, name: str, domain: str
                   ) -> tuple[uuid.UUID, uuid.UUID]:
    vm_id = await engine.add_vm(name)
    disk_id = await _disk(engine, "boot", domain, vm_id=vm_id)
    await engine.job((await engine.act(vms.start_vm, vm_id)).id)
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    return vm_id, disk_id


def _qemu_vm(engine: LoopbackEngine, vm_id: uuid.UUID):  # type: ignore[no-untyped-def]
    """The simulated domain (its state, its disks as QEMU opened them, its block copies)."""
    return engine.hosts["h1"].hypervisor._vms[vm_id]


async def test_a_running_vms_disk_moves_live_to_iscsi_and_back_while_it_stays_up(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _export, lun = await _domains(engine, monkeypatch, tmp_path)
    vm_id, disk_id = await _running(engine, "live", "nfs1")
    qemu = _qemu_vm(engine, vm_id)
    hypervisor = engine.hosts["h1"].hypervisor
    hypervisor.block_copy_polls = 5
    nfs_volume = Path(_file(*await _row(engine, disk_id)))

    job = await engine.act(disk_moves.move_disk, disk_id, Ref(name="san1"))
    async with engine.session() as session:
        disk = await session.get(Disk, disk_id)
        vm = await session.get(Vm, vm_id)
        assert disk is not None and vm is not None
        assert (disk.status, vm.status) == (DiskStatus.LOCKED, VmStatus.UP)
    with pytest.raises(Conflict):  # the VM is locked by the move: it is not stopped
        async with engine.session() as session:
            user = await session.get(User, engine.user_id)
            assert user is not None
            await vms.stop_vm(session, engine.jobs, vm_id, user)
    ended = await engine.job(job.id)
    await engine.settled()
    assert ended.state == "done", ended.error

    disk, domain = await _row(engine, disk_id)
    assert (domain.name, disk.status) == ("san1", DiskStatus.OK)
    assert await _reads(engine, disk_id, lun)
    assert not await asyncio.to_thread(nfs_volume.exists)
    assert str(disk_id) in str(lun.metadata())
    # The same QEMU runs on, writing the extent now; it never stopped.
    assert _qemu_vm(engine, vm_id) is qemu and qemu.state is VmState.RUNNING
    source, _fmt = qemu.disks[disk_id]
    assert isinstance(source, IscsiSource) and source.offset is not None
    assert (await engine.vm(vm_id)).status == VmStatus.UP
    async with engine.session() as session:
        steps = (await session.execute(select(Step.description, Step.progress).where(
            Step.job_id == job.id).order_by(Step.number))).all()
    live = [(text, progress) for text, progress in steps if "live" in text]
    assert live and live[0][1] == 100 and "switching" in live[0][0]
    [moving] = await _events(engine, audit.DISK_MOVING)
    assert "while VM live runs" in moving
    [moved] = await _events(engine, audit.DISK_MOVED)
    assert "while its VM kept running" in moved
    await _no_locks(engine)

    hypervisor.block_copy_polls = 1
    job = await engine.act(disk_moves.move_disk, disk_id, Ref(name="nfs1"))
    assert (await engine.job(job.id)).state == "done"
    await engine.settled()
    disk, domain = await _row(engine, disk_id)
    assert (domain.name, disk.status) == ("nfs1", DiskStatus.OK)
    assert await _reads(engine, disk_id, lun)
    source, _fmt = qemu.disks[disk_id]
    assert isinstance(source, NfsSource) and source.path.endswith(disk.image_path)
    async with engine.session() as session:
        assert (await session.execute(select(ExtentReservation))).all() == []
        san = (await session.execute(select(StorageDomain).where(
            StorageDomain.name == "san1"))).scalar_one()
        assert san.used_bytes == 0
        # A later start opens the new volume (the running domain already does).
        spec = await build_vm_spec(session, await engine.vm(vm_id), vnc_password="secret")
    assert spec.disks[0].source == source
    await _no_locks(engine)


async def test_live_moves_that_cannot_be_made_are_refused_changing_nothing(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    await _domains(engine, monkeypatch, tmp_path)
    vm_id, disk_id = await _running(engine, "runner", "nfs1")
    before = await _state(engine)

    async def refused(*args: object) -> str:
        with pytest.raises(Conflict) as caught:
            await engine.act(*args)  # type: ignore[arg-type]
        assert await _state(engine) == before
        return str(caught.value)

    said = await refused(disk_moves.move_disk, disk_id, Ref(name="h1-local"))
    assert "between NFS and iSCSI domains only" in said and "runner" in said
    said = await refused(disk_moves.copy_disk, disk_id, Ref(name="san1"), None)
    assert "copies disks of down VMs only" in said
    async with engine.session() as session:
        vm = await session.get(Vm, vm_id)
        assert vm is not None
        vm.status = VmStatus.PAUSED
    before = await _state(engine)
    said = await refused(disk_moves.move_disk, disk_id, Ref(name="san1"))
    assert "moved live only while its VM is up" in said


async def test_a_mirror_that_fails_leaves_the_vm_on_its_volume_and_removes_the_target(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _export, lun = await _domains(engine, monkeypatch, tmp_path)
    vm_id, disk_id = await _running(engine, "unlucky", "nfs1")
    hypervisor = engine.hosts["h1"].hypervisor
    hypervisor.block_copy_fails = "the target stopped answering"
    before_row = await _row(engine, disk_id)

    job = await engine.act(disk_moves.move_disk, disk_id, Ref(name="san1"))
    ended = await engine.job(job.id)
    await engine.settled()
    assert ended.state == "failed" and "before it was in sync" in (ended.error or "")
    assert ended.attempts == 3  # each try started a mirror again
    assert len(hypervisor.block_copies_started) == 3
    disk, domain = await _row(engine, disk_id)
    assert (disk.status, domain.name, disk.image_path) == (
        DiskStatus.OK, "nfs1", before_row[0].image_path)
    assert await _reads(engine, disk_id, lun)
    qemu = _qemu_vm(engine, vm_id)
    assert qemu.state is VmState.RUNNING and qemu.copies == {}
    assert isinstance(qemu.disks[disk_id][0], NfsSource)
    assert (await engine.vm(vm_id)).status == VmStatus.UP
    [failed] = await _events(engine, audit.DISK_MOVE_FAILED)
    assert "keeps running" in failed and "removed." in failed
    # The target's extent was freed by the removal job at once (no mirror writes it).
    async with engine.session() as session:
        san = (await session.execute(select(StorageDomain).where(
            StorageDomain.name == "san1"))).scalar_one()
        assert san.used_bytes == 0
        removal = (await session.execute(select(Job).where(
            Job.action == "storage.remove_volumes"))).scalar_one()
        assert removal.state == "done"
    await _no_locks(engine)


async def test_a_vm_that_stops_during_the_mirror_fails_the_move_and_keeps_its_volume(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _export, lun = await _domains(engine, monkeypatch, tmp_path)
    vm_id, disk_id = await _running(engine, "quitter", "nfs1")
    hypervisor = engine.hosts["h1"].hypervisor
    hypervisor.block_copy_polls = 10**6
    job = await engine.act(disk_moves.move_disk, disk_id, Ref(name="san1"))
    await engine.eventually(lambda: _mirroring(engine, vm_id))
    await hypervisor.destroy(vm_id)  # the guest powered itself off
    ended = await engine.job(job.id)
    await engine.settled()
    assert ended.state == "failed" and "stopped while its disk" in (ended.error or "")
    disk, domain = await _row(engine, disk_id)
    assert (disk.status, domain.name) == (DiskStatus.OK, "nfs1")
    assert await _reads(engine, disk_id, lun)
    await engine.vm_reaches(vm_id, [VmStatus.DOWN])
    await _no_locks(engine)


async def _mirroring(engine: LoopbackEngine, vm_id: uuid.UUID) -> bool:
    return bool(_qemu_vm(engine, vm_id).copies)


async def test_an_engine_that_dies_mid_mirror_leaves_it_to_a_successor_that_pivots(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The engine dies while the mirror is not in sync yet: the disk is `locked`, the job
    `running`, the VM up. The successor asks the node, finds the mirror (it starts none),
    follows it, pivots, switches the disk and removes the old volume."""
    _export, lun = await _domains(engine, monkeypatch, tmp_path)
    vm_id, disk_id = await _running(engine, "survivor", "nfs1")
    hypervisor = engine.hosts["h1"].hypervisor
    hypervisor.block_copy_polls = 10**6
    old = Path(_file(*await _row(engine, disk_id)))
    job = await engine.act(disk_moves.move_disk, disk_id, Ref(name="san1"))
    await engine.eventually(lambda: _mirroring(engine, vm_id))
    await engine.worker.stop()
    async with engine.session() as session:
        row = await session.get(Job, job.id)
        disk = await session.get(Disk, disk_id)
        assert row is not None and disk is not None
        assert (row.state, disk.status) == ("running", DiskStatus.LOCKED)
        row.lease_until = row.start_time
    assert (await engine.vm(vm_id)).status == VmStatus.UP

    for copy in _qemu_vm(engine, vm_id).copies.values():
        copy.polls_left = 2  # the mirror gets in sync while no engine watches
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 7)
    ended = await engine.successor_ends(job.id)
    assert ended.state == "done", ended.error
    assert len(hypervisor.block_copies_started) == 1
    disk, domain = await _row(engine, disk_id)
    assert (disk.status, domain.name) == (DiskStatus.OK, "san1")
    assert await _reads(engine, disk_id, lun)
    assert not await asyncio.to_thread(old.exists)
    assert isinstance(_qemu_vm(engine, vm_id).disks[disk_id][0], IscsiSource)
    async with engine.session() as session:
        assert (await session.execute(select(Lock))).all() == []


async def test_an_engine_that_dies_after_the_pivot_leaves_the_switch_to_a_successor(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """QEMU writes the target, the database does not say so yet: the successor asks the
    node, finds the pivot made, switches the disk and removes the old volume; it mirrors
    nothing again."""
    _export, lun = await _domains(engine, monkeypatch, tmp_path)
    vm_id, disk_id = await _running(engine, "pivoted", "nfs1")
    hypervisor = engine.hosts["h1"].hypervisor
    old = Path(_file(*await _row(engine, disk_id)))
    from overt.engine.jobs.handlers import disk_moves as handlers

    real_switch, stalled = handlers._switch, asyncio.Event()

    async def dies_first(ctx: object, spec: object) -> None:
        stalled.set()
        await asyncio.Event().wait()  # never returns: the engine dies here
    monkeypatch.setattr(handlers, "_switch", dies_first)
    job = await engine.act(disk_moves.move_disk, disk_id, Ref(name="san1"))
    await asyncio.wait_for(stalled.wait(), 60)
    await engine.worker.stop()
    assert isinstance(_qemu_vm(engine, vm_id).disks[disk_id][0], IscsiSource)
    disk, domain = await _row(engine, disk_id)
    assert (disk.status, domain.name) == (DiskStatus.LOCKED, "nfs1")
    async with engine.session() as session:
        row = await session.get(Job, job.id)
        assert row is not None
        row.lease_until = row.start_time
    monkeypatch.setattr(handlers, "_switch", real_switch)

    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 7)
    ended = await engine.successor_ends(job.id)
    assert ended.state == "done", ended.error
    assert len(hypervisor.block_copies_started) == 1
    disk, domain = await _row(engine, disk_id)
    assert (disk.status, domain.name) == (DiskStatus.OK, "san1")
    assert await _reads(engine, disk_id, lun)
    assert not await asyncio.to_thread(old.exists)


async def test_a_vm_lost_during_the_pivot_leaves_both_volumes_and_an_illegal_disk(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The VM dies while its host pivots, and the reply is lost: no node can say which
    volume QEMU last wrote. The disk is not locked any more but `illegal`, both volumes
    are kept (nothing removed) and an error event names them."""
    await _domains(engine, monkeypatch, tmp_path)
    vm_id, disk_id = await _running(engine, "doomed", "nfs1")
    hypervisor = engine.hosts["h1"].hypervisor
    nfs_volume = Path(_file(*await _row(engine, disk_id)))
    real = hypervisor.block_copy

    async def dies_pivoting(vm: uuid.UUID, disk: uuid.UUID, destination: object,
                            fmt: object, action: str) -> object:
        if action == "pivot":
            await hypervisor.destroy(vm)
            raise NodeFailure(ErrorCode.HYPERVISOR_ERROR, "the connection to QEMU was lost")
        return await real(vm, disk, destination, fmt, action)  # type: ignore[arg-type]
    monkeypatch.setattr(hypervisor, "block_copy", dies_pivoting)
    job = await engine.act(disk_moves.move_disk, disk_id, Ref(name="san1"))
    ended = await engine.job(job.id)
    await engine.settled()
    assert ended.state == "failed"
    disk, domain = await _row(engine, disk_id)
    assert (disk.status, domain.name) == (DiskStatus.ILLEGAL, "nfs1")
    assert await asyncio.to_thread(nfs_volume.exists)
    [failed] = await _events(engine, audit.DISK_MOVE_FAILED)
    assert "both are kept" in failed
    await engine.vm_reaches(vm_id, [VmStatus.DOWN])
    async with engine.session() as session:
        assert (await session.execute(select(Job).where(
            Job.action == "storage.remove_volumes"))).first() is None
        assert (await session.execute(select(Lock))).all() == []
