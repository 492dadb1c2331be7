"""oVirt's disk `copy` and `move` over the fast lane, between a host's local domain, an
NFS export and an iSCSI LUN (simulated by files): the jobs copy real images with
qemu-img; what users see (statuses, ids, attachments, events, locks, refusals) and what
lies on storage are both checked."""

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

from overt.engine import audit
from overt.engine.db.tables import (
    AuditEvent,
    Disk,
    DiskAttachment,
    ExtentReservation,
    Job,
    Lock,
    SnapshotVolume,
    StorageDomain,
    User,
    Vm,
)
from overt.engine.jobs import queue
from overt.engine.model.errors import Conflict
from overt.engine.model.status import DiskStatus, StorageDomainStatus, StorageType, VmStatus
from overt.engine.queries.lookup import Ref
from overt.engine.queries.shared_storage import extent_of, split_volume_path
from overt.engine.queries.vm_spec import build_vm_spec
from overt.engine.services import devices, disk_moves, vms
from overt.engine.services.inputs import DiskAttachmentInput, DiskInput
from overt.node.errors import NodeFailure
from overt.node.storage import copies, nfs_domain
from overt.protocol import ErrorCode
from overt.protocol.ovirt_metadata import render_metadata
from overt.protocol.storage import DOMAIN_AREA
from overt.protocol.vm import FileSource
from tests.integration.engine.jobs.test_iscsi_snapshot_jobs import TARGET, Lun
from tests.support.export_directory import ExportDirectory, use_export_directories
from tests.support.loopback import LoopbackEngine

MIB = 1 << 20
GIB = 1 << 30
PATTERN = 0x5A
LATER = 0x6B  # written over a snapshot
TOP_OF_CHAIN = "00000000-0000-0000-0000-000000000000"


def _qemu(fmt: str) -> str:
    return "qcow2" if fmt == "cow" else "raw"


def _write(path: str, fmt: str) -> None:
    subprocess.run(["qemu-io", "-f", _qemu(fmt), "-c", f"write -P {PATTERN} {2 * MIB} 64k", path],
                   check=True, capture_output=True)


def _holds(path: str, fmt: str) -> bool:
    done = subprocess.run(["qemu-io", "-r", "-f", _qemu(fmt), "-c", f"read -P {PATTERN} {2 * MIB} 64k",
                           path], capture_output=True, text=True, check=False)
    return done.returncode == 0 and "Pattern verification failed" not in done.stdout


async def _domains(engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                   *, lun_size: int = 64 * MIB) -> tuple[Path, Lun]:
    """Host h1 with its local domain, NFS domain nfs1 and iSCSI domain san1, all active
    with room; the export's path and the LUN."""
    use_export_directories(monkeypatch, tmp_path / "nfs")
    lun = Lun(tmp_path / "lun1.img", monkeypatch)
    await asyncio.to_thread(subprocess.run, ["truncate", "-s", str(lun_size), str(lun.path)],
                            check=True)
    await engine.add_host("h1")
    sd_id = uuid.uuid4()
    async with engine.session() as session:
        local = (await session.execute(select(StorageDomain))).scalar_one()
        local.available_bytes = GIB
        session.add(StorageDomain(id=sd_id, name="nfs1", storage_type=StorageType.NFS.value,
                                  address="10.9.9.9", path="/export", host_id=local.host_id,
                                  storage_uuid=sd_id, available_bytes=GIB,
                                  status=StorageDomainStatus.ACTIVE.value))
        session.add(StorageDomain(id=uuid.uuid4(), name="san1",
                                  storage_type=StorageType.ISCSI.value, address="10.9.9.9",
                                  path=f"{TARGET}/1", host_id=local.host_id,
                                  status=StorageDomainStatus.ACTIVE.value, used_bytes=0,
                                  available_bytes=lun_size - DOMAIN_AREA))
    export = ExportDirectory("10.9.9.9", "/export")
    await asyncio.to_thread(export.makedirs, f"/{sd_id}/dom_md")
    await asyncio.to_thread(export.write_bytes, f"/{sd_id}/dom_md/metadata",
                            render_metadata({"SDUUID": str(sd_id)}, checksum=True, eof=False))
    return export.base, lun


async def _disk(engine: LoopbackEngine, name: str, domain: str, *, fmt: str = "cow",
                vm_id: uuid.UUID | None = None) -> uuid.UUID:
    """A disk of 8 MiB on `domain` (attached to the VM, if given) holding PATTERN."""
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        assert user is not None
        data = DiskInput(name=name, provisioned_size=8 * MIB, format=fmt,
                         storage_domain=Ref(name=domain))
        if vm_id is None:
            disk_id = (await devices.add_disk(session, engine.jobs, data, user)).id
        else:
            vm = await session.get(Vm, vm_id)
            assert vm is not None
            disk_id = (await devices.add_disk_attachment(
                session, engine.jobs, vm, DiskAttachmentInput(disk=data, bootable=True),
                user)).disk_id
    await engine.settled()
    await _fill(engine, disk_id)
    return disk_id


async def _row(engine: LoopbackEngine, disk_id: uuid.UUID) -> tuple[Disk, StorageDomain]:
    async with engine.session() as session:
        disk = await session.get(Disk, disk_id)
        assert disk is not None
        domain = await session.get(StorageDomain, disk.storage_domain_id)
        assert domain is not None
    return disk, domain


async def _fill(engine: LoopbackEngine, disk_id: uuid.UUID) -> None:
    disk, domain = await _row(engine, disk_id)
    assert domain.storage_type != StorageType.ISCSI.value
    await asyncio.to_thread(_write, _file(disk, domain), disk.format)


def _file(disk: Disk, domain: StorageDomain) -> str:
    if domain.storage_type == StorageType.NFS.value:
        return str(ExportDirectory("10.9.9.9", "/export").base / disk.image_path)
    return f"{domain.path.rstrip('/')}/{disk.image_path}"


async def _reads(engine: LoopbackEngine, disk_id: uuid.UUID, lun: Lun) -> bool:
    disk, domain = await _row(engine, disk_id)
    if domain.storage_type == StorageType.ISCSI.value:
        return await asyncio.to_thread(lun.reads, disk.image_path, disk.format, PATTERN,
                                       2 * MIB)
    return await asyncio.to_thread(_holds, _file(disk, domain), disk.format)


async def _ended(engine: LoopbackEngine, job: Job) -> Job:
    ended = await engine.job(job.id)
    await engine.settled()
    return ended


async def _events(engine: LoopbackEngine, code: int) -> list[str]:
    async with engine.session() as session:
        return list((await session.execute(select(AuditEvent.description).where(
            AuditEvent.code == code))).scalars())


async def _no_locks(engine: LoopbackEngine) -> None:
    async with engine.session() as session:
        assert (await session.execute(select(Lock))).all() == []
        assert (await session.execute(select(func.count()).select_from(ExtentReservation))
                ).scalar_one() == 0


async def test_a_down_vms_disk_is_moved_keeping_its_id_and_attachment(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """NFS -> local -> iSCSI: the same disk, still the VM's, its data along; each old
    volume removed; the VM then runs from the new domain."""
    _export, lun = await _domains(engine, monkeypatch, tmp_path)
    vm_id = await engine.add_vm("mover")
    disk_id = await _disk(engine, "boot", "nfs1", vm_id=vm_id)
    nfs_volume = Path(_file(*await _row(engine, disk_id)))
    job = await engine.act(disk_moves.move_disk, disk_id, Ref(name="h1-local"))
    async with engine.session() as session:
        disk = await session.get(Disk, disk_id)
        assert disk is not None and disk.status == DiskStatus.LOCKED
        with pytest.raises(Conflict):  # the VM is locked by the move
            await vms.start_vm(session, engine.jobs, vm_id,
                               await session.get(User, engine.user_id))
    ended = await _ended(engine, job)
    assert ended.state == "done", ended.error
    disk, domain = await _row(engine, disk_id)
    assert (domain.name, disk.status) == ("h1-local", DiskStatus.OK)
    assert await _reads(engine, disk_id, lun)
    assert not await asyncio.to_thread(nfs_volume.exists)
    async with engine.session() as session:
        attached = (await session.execute(select(DiskAttachment.vm_id).where(
            DiskAttachment.disk_id == disk_id))).scalars().all()
        spec = await build_vm_spec(session, await engine.vm(vm_id), vnc_password="secret")
    assert attached == [vm_id]
    assert spec.disks[0].source == FileSource(path=_file(disk, domain))
    local_file = Path(_file(disk, domain))

    job = await engine.act(disk_moves.move_disk, disk_id, Ref(name="san1"))
    assert (await _ended(engine, job)).state == "done"
    disk, domain = await _row(engine, disk_id)
    assert (domain.name, disk.status, disk.id) == ("san1", DiskStatus.OK, disk_id)
    assert await _reads(engine, disk_id, lun)
    assert not await asyncio.to_thread(local_file.exists)
    assert str(disk_id) in str(lun.metadata())
    await _no_locks(engine)
    assert len(await _events(engine, audit.DISK_MOVED)) == 2
    assert len(await _events(engine, audit.DISK_MOVING)) == 2

    await engine.job((await engine.act(vms.start_vm, vm_id)).id)
    await engine.vm_reaches(vm_id, [VmStatus.UP])


async def test_disks_are_copied_nfs_to_iscsi_and_iscsi_to_local(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each copy is a new floating disk (named as asked, else as its source) with the
    source's data; the source stays `ok` where it was."""
    _export, lun = await _domains(engine, monkeypatch, tmp_path)
    source_id = await _disk(engine, "golden", "nfs1", fmt="raw")
    source_row = await _row(engine, source_id)
    job = await engine.act(disk_moves.copy_disk, source_id, Ref(name="san1"), "on-san")
    assert (await _ended(engine, job)).state == "done"
    async with engine.session() as session:
        on_san = (await session.execute(select(Disk).where(Disk.name == "on-san"))
                  ).scalar_one()
    assert on_san.id != source_id
    assert await _reads(engine, on_san.id, lun)
    assert str(on_san.id) in str(lun.metadata())

    job = await engine.act(disk_moves.copy_disk, on_san.id, Ref(name="h1-local"), None)
    assert (await _ended(engine, job)).state == "done"
    async with engine.session() as session:
        names = sorted((await session.execute(select(Disk.name))).scalars())
        local = (await session.execute(select(Disk).where(
            Disk.name == "on-san", Disk.id != on_san.id))).scalar_one()
    assert names == ["golden", "on-san", "on-san"]
    assert await _reads(engine, local.id, lun)
    disk, domain = await _row(engine, source_id)
    assert (disk.status, disk.image_path, domain.name) == (
        DiskStatus.OK, source_row[0].image_path, "nfs1")
    assert await _reads(engine, source_id, lun)
    assert len(await _events(engine, audit.DISK_COPIED)) == 2
    await _no_locks(engine)


async def _state(engine: LoopbackEngine) -> list[tuple[Any, ...]]:
    async with engine.session() as session:
        disks = (await session.execute(select(
            Disk.id, Disk.status, Disk.storage_domain_id, Disk.image_path).order_by(Disk.id)
        )).all()
        jobs = (await session.execute(select(func.count()).select_from(Job))).scalar_one()
        free = (await session.execute(select(StorageDomain.name, StorageDomain.available_bytes)
                                      .order_by(StorageDomain.name))).all()
    return [*disks, jobs, *free]


async def test_copies_and_moves_that_cannot_be_made_are_refused_changing_nothing(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    await _domains(engine, monkeypatch, tmp_path, lun_size=DOMAIN_AREA + 16 * MIB)
    vm_id = await engine.add_vm("runner")
    used = await _disk(engine, "used", "nfs1", vm_id=vm_id)
    floating = await _disk(engine, "floating", "nfs1")
    await engine.job((await engine.act(vms.start_vm, vm_id)).id)
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    before = await _state(engine)

    async def refused(action: Any, *args: Any) -> str:
        with pytest.raises(Conflict) as caught:
            await engine.act(action, *args)
        assert await _state(engine) == before
        return str(caught.value)

    said = await refused(disk_moves.move_disk, used, Ref(name="h1-local"))
    assert "between NFS and iSCSI domains only" in said and "runner" in said
    assert "copies disks of down VMs only" in await refused(
        disk_moves.copy_disk, used, Ref(name="h1-local"), None)
    assert "already on storage domain nfs1" in await refused(
        disk_moves.move_disk, floating, Ref(name="nfs1"))
    async with engine.session() as session:
        for domain in (await session.execute(select(StorageDomain))).scalars():
            if domain.name == "h1-local":
                domain.available_bytes = 1024
    before = await _state(engine)
    said = await refused(disk_moves.move_disk, floating, Ref(name="h1-local"))
    assert "bytes free" in said
    async with engine.session() as session:
        domain = (await session.execute(select(StorageDomain).where(
            StorageDomain.name == "h1-local"))).scalar_one()
        domain.available_bytes, domain.status = GIB, StorageDomainStatus.MAINTENANCE
    before = await _state(engine)
    assert "not active" in await refused(disk_moves.move_disk, floating, Ref(name="h1-local"))
    assert "not active" in await refused(disk_moves.copy_disk, floating, Ref(name="h1-local"),
                                         None)
    async with engine.session() as session:
        domain = (await session.execute(select(StorageDomain).where(
            StorageDomain.name == "h1-local"))).scalar_one()
        domain.status, domain.type = StorageDomainStatus.ACTIVE, "iso"
    before = await _state(engine)
    assert "not a data domain" in await refused(disk_moves.move_disk, floating,
                                                Ref(name="h1-local"))
    async with engine.session() as session:
        domain = (await session.execute(select(StorageDomain).where(
            StorageDomain.name == "h1-local"))).scalar_one()
        domain.type, domain.data_center_id = "data", await _data_center(session, engine)
    before = await _state(engine)
    assert "not in the data center" in await refused(disk_moves.copy_disk, floating,
                                                     Ref(name="h1-local"), None)
    async with engine.session() as session:
        san = (await session.execute(select(StorageDomain).where(
            StorageDomain.name == "san1"))).scalar_one()
        san.available_bytes = 4 * MIB
    before = await _state(engine)
    said = await refused(disk_moves.move_disk, floating, Ref(name="san1"))
    assert "Cannot add a volume for moving disk floating" in said and "no free extent" in said
    assert "no free extent" in await refused(disk_moves.copy_disk, floating, Ref(name="san1"),
                                             None)
    async with engine.session() as session:
        disk = await session.get(Disk, floating)
        assert disk is not None
        disk.shareable = True
    before = await _state(engine)
    assert "shareable" in await refused(disk_moves.move_disk, floating, Ref(name="san1"))
    async with engine.session() as session:
        disk = await session.get(Disk, floating)
        assert disk is not None
        disk.shareable, disk.status = False, DiskStatus.ILLEGAL
    before = await _state(engine)
    assert "not ok" in await refused(disk_moves.move_disk, floating, Ref(name="san1"))


async def _data_center(session: Any, engine: LoopbackEngine) -> uuid.UUID:
    from overt.engine.db.tables import Cluster

    cluster = await session.get(Cluster, engine.cluster_id)
    assert cluster is not None
    return cluster.data_center_id  # type: ignore[no-any-return]


async def test_a_disk_with_snapshots_is_copied_collapsed(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A down VM's disk with a snapshot, copied to iSCSI and to a local domain: each copy
    is one new volume (no backing) holding what the snapshot froze and what was written
    over it; the source keeps its chain."""
    from overt.engine.services import snapshots

    _export, lun = await _domains(engine, monkeypatch, tmp_path)
    vm_id = await engine.add_vm("snappy")
    nfs_disk = await _disk(engine, "boot", "nfs1", vm_id=vm_id)  # PATTERN at 2 MiB
    _snapshot, job = await engine.act(snapshots.add_snapshot, vm_id, "before")
    assert (await _ended(engine, job)).state == "done"
    active, domain = await _row(engine, nfs_disk)
    await asyncio.to_thread(subprocess.run, ["qemu-io", "-f", "qcow2", "-c",
                                             f"write -P {LATER} {3 * MIB} 64k",
                                             _file(active, domain)], check=True,
                            capture_output=True)
    async with engine.session() as session:
        chain = (await session.execute(select(SnapshotVolume.image_path).where(
            SnapshotVolume.disk_id == nfs_disk))).scalars().all()
    assert len(chain) == 1

    for target, name in (("san1", "on-san"), ("h1-local", "local")):
        job = await engine.act(disk_moves.copy_disk, nfs_disk, Ref(name=target), name)
        assert (await _ended(engine, job)).state == "done", job.error
        async with engine.session() as session:
            made = (await session.execute(select(Disk).where(Disk.name == name))).scalar_one()
        assert await _reads(engine, made.id, lun)
        assert await _holds_later(engine, made.id, lun)
        if target == "san1":
            [record] = [v for k, v in lun.metadata().items() if str(made.id) in v]
            assert record.split(",")[6] == TOP_OF_CHAIN  # one volume, no parent
        else:
            assert "backing-filename" not in await _info(_file(*await _row(engine, made.id)))
    disk, _domain = await _row(engine, nfs_disk)
    assert (disk.status, disk.image_path) == (DiskStatus.OK, active.image_path)
    async with engine.session() as session:
        assert (await session.execute(select(SnapshotVolume.image_path).where(
            SnapshotVolume.disk_id == nfs_disk))).scalars().all() == chain
    await _no_locks(engine)


async def test_an_iscsi_disk_with_snapshots_is_copied_collapsed_to_nfs(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The source chain is extents of the LUN whose qcow2 headers name the extent under
    them: the copy reads it through and is one NFS volume."""
    from overt.engine.services import snapshots

    _export, lun = await _domains(engine, monkeypatch, tmp_path)
    vm_id = await engine.add_vm("snappy")
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        vm = await session.get(Vm, vm_id)
        assert user is not None and vm is not None
        disk_id = (await devices.add_disk_attachment(session, engine.jobs, vm, DiskAttachmentInput(
            disk=DiskInput(name="boot", provisioned_size=8 * MIB, format="cow",
                           storage_domain=Ref(name="san1")), bootable=True), user)).disk_id
    await engine.settled()
    base, _domain = await _row(engine, disk_id)
    await asyncio.to_thread(lun.write, base.image_path, "cow", f"write -P {PATTERN} {2 * MIB} 64k")
    _snapshot, job = await engine.act(snapshots.add_snapshot, vm_id, "before")
    assert (await _ended(engine, job)).state == "done"
    active, _domain = await _row(engine, disk_id)
    assert active.image_path != base.image_path
    await asyncio.to_thread(lun.write, active.image_path, "cow", f"write -P {LATER} {3 * MIB} 64k")
    job = await engine.act(disk_moves.copy_disk, disk_id, Ref(name="nfs1"), "on-nfs")
    assert (await _ended(engine, job)).state == "done"
    async with engine.session() as session:
        made = (await session.execute(select(Disk).where(Disk.name == "on-nfs"))).scalar_one()
    assert await _reads(engine, made.id, lun) and await _holds_later(engine, made.id, lun)
    assert "backing-filename" not in await _info(_file(*await _row(engine, made.id)))
    await _no_locks(engine)


NEWEST = 0x7C  # written over the second snapshot


async def _write_over(engine: LoopbackEngine, disk_id: uuid.UUID, lun: Lun, pattern: int,
                      at: int) -> None:
    """`pattern` written at `at` into the disk's active volume (as its guest would)."""
    disk, domain = await _row(engine, disk_id)
    command = f"write -P {pattern} {at} 64k"
    if domain.storage_type == StorageType.ISCSI.value:
        await asyncio.to_thread(lun.write, disk.image_path, disk.format, command)
        return
    await asyncio.to_thread(subprocess.run, ["qemu-io", "-f", "qcow2", "-c", command,
                                             _file(disk, domain)], check=True,
                            capture_output=True)


async def _chain_rows(engine: LoopbackEngine, disk_id: uuid.UUID) -> list[str]:
    async with engine.session() as session:
        return list((await session.execute(select(SnapshotVolume.image_path).where(
            SnapshotVolume.disk_id == disk_id).order_by(SnapshotVolume.pk))).scalars())


async def _layer_holds(engine: LoopbackEngine, domain: StorageDomain, path: str, lun: Lun,
                       pattern: int, at: int) -> bool:
    """Whether the volume at `path` (read with what is under it) holds `pattern`."""
    if domain.storage_type == StorageType.ISCSI.value:
        return await asyncio.to_thread(lun.reads, path, "cow", pattern, at)
    if domain.storage_type == StorageType.NFS.value:
        where = str(ExportDirectory("10.9.9.9", "/export").base / path)
    else:
        where = f"{domain.path.rstrip('/')}/{path}"
    done = await asyncio.to_thread(subprocess.run, [
        "qemu-io", "-r", "-f", "qcow2", "-c", f"read -P {pattern} {at} 64k", where],
        capture_output=True, text=True, check=False)
    return done.returncode == 0 and "Pattern verification failed" not in done.stdout


async def test_a_down_vms_disk_moves_with_its_snapshot_chain(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """NFS -> iSCSI -> local -> NFS with two snapshots: every volume of the chain goes over
    the one under it on the target (the snapshots stay snapshots: the oldest volume lacks
    what was written after it), the rows switched, the old volumes removed; then a
    snapshot is merged away and the VM starts."""
    from overt.engine.services import snapshots

    _export, lun = await _domains(engine, monkeypatch, tmp_path)
    vm_id = await engine.add_vm("chained")
    disk_id = await _disk(engine, "boot", "nfs1", vm_id=vm_id)  # PATTERN at 2 MiB
    taken = []
    for number, (pattern, at) in enumerate(((LATER, 3 * MIB), (NEWEST, 4 * MIB))):
        snapshot, job = await engine.act(snapshots.add_snapshot, vm_id, f"snap{number}")
        assert (await _ended(engine, job)).state == "done"
        taken.append(snapshot.id)
        await _write_over(engine, disk_id, lun, pattern, at)
    old_paths = [*await _chain_rows(engine, disk_id), (await _row(engine, disk_id))[0].image_path]
    assert len(old_paths) == 3

    for target in ("san1", "h1-local", "nfs1"):
        before, before_domain = await _row(engine, disk_id)
        old = [*await _chain_rows(engine, disk_id), before.image_path]
        job = await engine.act(disk_moves.move_disk, disk_id, Ref(name=target))
        ended = await _ended(engine, job)
        assert ended.state == "done", ended.error
        disk, domain = await _row(engine, disk_id)
        chain = await _chain_rows(engine, disk_id)
        assert (domain.name, disk.status, len(chain)) == (target, DiskStatus.OK, 2)
        assert not set(old) & {*chain, disk.image_path}
        for pattern, at in ((PATTERN, 2 * MIB), (LATER, 3 * MIB), (NEWEST, 4 * MIB)):
            assert await _layer_holds(engine, domain, disk.image_path, lun, pattern, at)
        # The snapshots stay what they froze.
        assert await _layer_holds(engine, domain, chain[0], lun, PATTERN, 2 * MIB)
        assert not await _layer_holds(engine, domain, chain[0], lun, LATER, 3 * MIB)
        assert await _layer_holds(engine, domain, chain[1], lun, LATER, 3 * MIB)
        assert not await _layer_holds(engine, domain, chain[1], lun, NEWEST, 4 * MIB)
        if target == "san1":
            extents = [extent_of(p) for p in (*chain, disk.image_path)]
            assert lun.storage_chain(disk.image_path) == [e[0] for e in extents if e]
            records = {k.removeprefix("VOL_"): v.split(",") for k, v in lun.metadata().items()
                       if k.startswith("VOL_")}
            ids = [str(split_volume_path(p)[1]) for p in (*chain, disk.image_path)]
            assert [records[i][6] for i in ids] == [TOP_OF_CHAIN, ids[0], ids[1]]
            assert [records[i][7] for i in ids] == ["INTERNAL", "INTERNAL", "LEAF"]
        elif target == "h1-local":
            info = await _info(_file(disk, domain))
            assert info["backing-filename"].endswith(chain[1])
        else:
            image = ExportDirectory("10.9.9.9", "/export").base / disk.image_path
            metas = {p.name: p.read_text() for p in image.parent.glob("*.meta")}
            assert len(metas) == 3
            top_id, under_id = split_volume_path(disk.image_path)[1], split_volume_path(
                chain[1])[1]
            assert f"PUUID={under_id}" in metas[f"{top_id}.meta"]
            assert "VOLTYPE=LEAF" in metas[f"{top_id}.meta"]
            assert "VOLTYPE=INTERNAL" in metas[f"{under_id}.meta"]
        if before_domain.storage_type != StorageType.ISCSI.value:
            for path in old:
                assert not await asyncio.to_thread(Path(_file(Disk(image_path=path),
                                                              before_domain)).exists)
        await _no_locks(engine)
    async with engine.session() as session:
        san = (await session.execute(select(StorageDomain).where(
            StorageDomain.name == "san1"))).scalar_one()
        assert san.used_bytes == 0  # every extent the chain held is free again

    job = await engine.act(snapshots.remove_snapshot, vm_id, taken[0])
    assert (await _ended(engine, job)).state == "done"
    for pattern, at in ((PATTERN, 2 * MIB), (LATER, 3 * MIB), (NEWEST, 4 * MIB)):
        disk, domain = await _row(engine, disk_id)
        assert await _layer_holds(engine, domain, disk.image_path, lun, pattern, at)
    await engine.job((await engine.act(vms.start_vm, vm_id)).id)
    await engine.vm_reaches(vm_id, [VmStatus.UP])


async def test_an_engine_that_dies_mid_chain_leaves_the_rest_to_a_successor(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The engine dies while the second volume of a chain is copied: the successor copies
    what is left (no layer twice), switches the rows and removes the old chain."""
    from overt.engine.services import snapshots

    _export, lun = await _domains(engine, monkeypatch, tmp_path)
    vm_id = await engine.add_vm("chained")
    disk_id = await _disk(engine, "boot", "nfs1", vm_id=vm_id)
    _snapshot, job = await engine.act(snapshots.add_snapshot, vm_id, "one")
    assert (await _ended(engine, job)).state == "done"
    await _write_over(engine, disk_id, lun, LATER, 3 * MIB)
    convert, go_on, stalled = copies._convert, asyncio.Event(), asyncio.Event()
    targets: list[str] = []

    async def stalls_second(command: copies.VolumeCopy, source: str, target: str,
                            *backing: str) -> None:
        targets.append(target)
        if len(targets) == 2:
            stalled.set()
            await go_on.wait()
        await convert(command, source, target, *backing)
    monkeypatch.setattr(copies, "_convert", stalls_second)
    job = await engine.act(disk_moves.move_disk, disk_id, Ref(name="h1-local"))
    await asyncio.wait_for(stalled.wait(), 60)
    await engine.worker.stop()
    async with engine.session() as session:
        row = await session.get(Job, job.id)
        assert row is not None and row.state == "running"
        row.lease_until = row.start_time

    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 7)
    ended = await engine.successor_ends(job.id, go_on)
    assert ended.state == "done", ended.error
    assert len(targets) == 2 == len(set(targets))
    disk, domain = await _row(engine, disk_id)
    [base] = await _chain_rows(engine, disk_id)
    assert (disk.status, domain.name) == (DiskStatus.OK, "h1-local")
    assert await _layer_holds(engine, domain, disk.image_path, lun, LATER, 3 * MIB)
    assert await _layer_holds(engine, domain, base, lun, PATTERN, 2 * MIB)
    assert not await _layer_holds(engine, domain, base, lun, LATER, 3 * MIB)
    await _no_locks(engine)


async def test_a_chain_move_that_fails_leaves_the_chain_where_it_was(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The second volume cannot be copied: the disk and its chain stay on NFS, `ok`, and
    the extents the target volumes took are free again."""
    from overt.engine.services import snapshots

    monkeypatch.setattr(queue, "MAX_BACKOFF_S", 0.05)
    _export, lun = await _domains(engine, monkeypatch, tmp_path)
    vm_id = await engine.add_vm("chained")
    disk_id = await _disk(engine, "boot", "nfs1", vm_id=vm_id)
    _snapshot, job = await engine.act(snapshots.add_snapshot, vm_id, "one")
    assert (await _ended(engine, job)).state == "done"
    before = (await _row(engine, disk_id))[0].image_path, await _chain_rows(engine, disk_id)
    real = copies._copy_to_extent

    async def fails_over_a_backing(command: copies.VolumeCopy, source: str,
                                   target: Any) -> Any:
        if command.backing is not None:
            raise NodeFailure(ErrorCode.HYPERVISOR_ERROR, "copying failed: I/O error")
        return await real(command, source, target)
    monkeypatch.setattr(copies, "_copy_to_extent", fails_over_a_backing)
    job = await engine.act(disk_moves.move_disk, disk_id, Ref(name="san1"))
    ended = await _ended(engine, job)
    assert ended.state == "failed" and "I/O error" in (ended.error or "")
    disk, domain = await _row(engine, disk_id)
    assert (disk.status, domain.name) == (DiskStatus.OK, "nfs1")
    assert (disk.image_path, await _chain_rows(engine, disk_id)) == before
    assert await _reads(engine, disk_id, lun)
    async with engine.session() as session:
        san = (await session.execute(select(StorageDomain).where(
            StorageDomain.name == "san1"))).scalar_one()
        assert san.used_bytes == 0
    await _no_locks(engine)


async def test_a_running_vms_disk_with_snapshots_is_not_moved(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from overt.engine.services import snapshots

    await _domains(engine, monkeypatch, tmp_path)
    vm_id = await engine.add_vm("snappy")
    disk_id = await _disk(engine, "boot", "nfs1", vm_id=vm_id)
    _snapshot, job = await engine.act(snapshots.add_snapshot, vm_id, "before")
    assert (await _ended(engine, job)).state == "done"
    await engine.job((await engine.act(vms.start_vm, vm_id)).id)
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    before = await _state(engine)
    with pytest.raises(Conflict, match="snapshot chain only while its VM is down"):
        await engine.act(disk_moves.move_disk, disk_id, Ref(name="san1"))
    assert await _state(engine) == before


async def _info(path: str) -> dict[str, Any]:
    done = await asyncio.to_thread(subprocess.run, ["qemu-img", "info", "--output=json", path],
                                   check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout))


async def _holds_later(engine: LoopbackEngine, disk_id: uuid.UUID, lun: Lun) -> bool:
    """Whether the disk reads as LATER at 3 MiB (written over its snapshot)."""
    disk, domain = await _row(engine, disk_id)
    if domain.storage_type == StorageType.ISCSI.value:
        return await asyncio.to_thread(lun.reads, disk.image_path, disk.format, LATER, 3 * MIB)
    done = await asyncio.to_thread(subprocess.run, [
        "qemu-io", "-r", "-f", _qemu(disk.format), "-c", f"read -P {LATER} {3 * MIB} 64k",
        _file(disk, domain)], capture_output=True, text=True, check=False)
    return done.returncode == 0 and "Pattern verification failed" not in done.stdout


async def test_a_failing_copy_leaves_no_target_and_the_source_ok(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(queue, "MAX_BACKOFF_S", 0.05)
    await _domains(engine, monkeypatch, tmp_path)
    source_id = await _disk(engine, "golden", "h1-local")
    written: list[Path] = []

    async def cut_short(command: copies.VolumeCopy, _source: str, target: str) -> None:
        await asyncio.to_thread(Path(target).write_bytes, b"half a copy")
        written.append(Path(target))
        raise NodeFailure(ErrorCode.HYPERVISOR_ERROR, "copying failed: No space left on device")
    monkeypatch.setattr(copies, "_convert", cut_short)
    for action, args in ((disk_moves.copy_disk, (Ref(name="nfs1"), "copy")),
                         (disk_moves.move_disk, (Ref(name="nfs1"),))):
        job = await engine.act(action, source_id, *args)
        ended = await _ended(engine, job)
        assert ended.state == "failed" and "No space left" in (ended.error or "")
        async with engine.session() as session:
            names = (await session.execute(select(Disk.name))).scalars().all()
        assert names == ["golden"]
        disk, domain = await _row(engine, source_id)
        assert (disk.status, domain.name) == (DiskStatus.OK, "h1-local")
    assert len(written) == 2 and not any(p.exists() for p in written)
    assert await _reads(engine, source_id, Lun(tmp_path / "lun1.img", monkeypatch))
    assert len(await _events(engine, audit.DISK_COPY_FAILED)) == 1
    assert len(await _events(engine, audit.DISK_MOVE_FAILED)) == 1
    await _no_locks(engine)


async def test_an_engine_that_dies_during_a_move_leaves_it_to_a_successor(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The engine dies while the copy is half written: the disk is `locked` on its old
    domain, the job `running`. The successor copies again, switches the disk and removes
    the old volume; nothing stays locked."""
    _export, lun = await _domains(engine, monkeypatch, tmp_path)
    vm_id = await engine.add_vm("mover")
    disk_id = await _disk(engine, "boot", "h1-local", vm_id=vm_id)
    old = Path(_file(*await _row(engine, disk_id)))
    convert, go_on, started = copies._convert, asyncio.Event(), asyncio.Event()

    async def stalls_first(command: copies.VolumeCopy, source: str, target: str) -> None:
        if not started.is_set():
            started.set()
            await asyncio.to_thread(Path(target).write_bytes, b"half a copy")
            await go_on.wait()
        await convert(command, source, target)
    monkeypatch.setattr(copies, "_convert", stalls_first)
    job = await engine.act(disk_moves.move_disk, disk_id, Ref(name="nfs1"))
    await asyncio.wait_for(started.wait(), 60)
    await engine.worker.stop()
    async with engine.session() as session:
        row = await session.get(Job, job.id)
        disk = await session.get(Disk, disk_id)
        assert row is not None and disk is not None
        assert (row.state, disk.status) == ("running", DiskStatus.LOCKED)
        row.lease_until = row.start_time

    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 7)
    ended = await engine.successor_ends(job.id, go_on)
    assert ended.state == "done", ended.error
    disk, domain = await _row(engine, disk_id)
    assert (disk.id, disk.status, domain.name) == (disk_id, DiskStatus.OK, "nfs1")
    assert await _reads(engine, disk_id, lun)
    assert not await asyncio.to_thread(old.exists)
    async with engine.session() as session:
        assert (await session.execute(select(DiskAttachment.vm_id).where(
            DiskAttachment.disk_id == disk_id))).scalars().all() == [vm_id]
        assert (await session.execute(select(Lock))).all() == []


async def test_an_engine_that_dies_after_the_switch_leaves_the_old_volume_to_a_successor(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The disk is recorded on its new domain (still `locked`) when the engine dies
    removing the old volume: the successor removes it and unlocks the disk; the copy is
    not made again."""
    _export, lun = await _domains(engine, monkeypatch, tmp_path)
    disk_id = await _disk(engine, "data", "nfs1")
    old = Path(_file(*await _row(engine, disk_id)))
    real, go_on, deleting = nfs_domain.NfsDomains._volume_delete, asyncio.Event(), \
        asyncio.Event()
    loop = asyncio.get_running_loop()
    copied: list[str] = []
    convert = copies._convert

    async def counted(command: copies.VolumeCopy, source: str, target: str) -> None:
        copied.append(target)
        await convert(command, source, target)
    monkeypatch.setattr(copies, "_convert", counted)

    def stalls_first(self: Any, command: Any) -> Any:
        if not deleting.is_set():
            loop.call_soon_threadsafe(deleting.set)
            asyncio.run_coroutine_threadsafe(go_on.wait(), loop).result(timeout=60)
        return real(self, command)
    monkeypatch.setattr(nfs_domain.NfsDomains, "_volume_delete", stalls_first)
    job = await engine.act(disk_moves.move_disk, disk_id, Ref(name="h1-local"))
    await asyncio.wait_for(deleting.wait(), 60)
    await engine.worker.stop()
    async with engine.session() as session:
        row = await session.get(Job, job.id)
        assert row is not None and row.state == "running"
        row.lease_until = row.start_time
    disk, domain = await _row(engine, disk_id)
    assert (disk.status, domain.name) == (DiskStatus.LOCKED, "h1-local")

    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 7)
    ended = await engine.successor_ends(job.id, go_on)
    assert ended.state == "done", ended.error
    disk, domain = await _row(engine, disk_id)
    assert (disk.status, domain.name) == (DiskStatus.OK, "h1-local")
    assert await _reads(engine, disk_id, lun)
    assert not await asyncio.to_thread(old.exists)
    assert len(copied) == 1
    async with engine.session() as session:
        assert (await session.execute(select(Lock))).all() == []
