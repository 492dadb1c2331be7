"""The import of an iSCSI domain over the fast lane: a first engine's domain on a LUN kept
as a local file (the node's real iSCSI code under the same `raw` window, as in
test_iscsi_snapshot_jobs), imported by a second engine (its own database and simulated
host) through the service calls the API makes: the host reads the LUN's metadata area
(the job the API waits for), then the import job adopts the domain with its id, its
disks (data readable, extents the same, never handed out again), its memory volumes as
the first engine showed them, and keeps the volumes it cannot adopt (snapshot chains) on
the LUN and out of the allocator. Bad requests are 4xx with nothing recorded, and an
engine that dies mid-import leaves the job to a successor."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from overt.engine.api.memory_disks import memory_disk_view, memory_disks
from overt.engine.db.seed import seed
from overt.engine.db.tables import Disk, Job, Lock, Snapshot, StorageDomain
from overt.engine.jobs.handlers import storage_domains
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.model.status import StorageDomainStatus, StorageType
from overt.engine.queries.lookup import Ref
from overt.engine.queries.shared_storage import allocate_extent, extent_of
from overt.engine.secrets import SecretBox
from overt.engine.services import snapshots, storage_shared
from overt.engine.services.inputs import LogicalUnitInput
from overt.engine.services.storage_domains import StorageDomainInput
from overt.node.storage import iscsi_domain
from overt.protocol.ovirt_metadata import parse_metadata
from overt.protocol.storage import LunRead
from tests.integration.engine.conftest import _fresh_sqlite
from tests.integration.engine.jobs import test_iscsi_snapshot_jobs as iscsi
from tests.support.loopback import LoopbackEngine

MIB = 1 << 20
PORTAL = "10.9.9.9"


@asynccontextmanager
async def _second_engine(migrated_sqlite: Path, lane_dir: Path, memory_dir: Path
                         ) -> AsyncIterator[LoopbackEngine]:
    """Another engine (its own database and host) beside the test's: the one that
    imports the domain the first engine made."""
    database = _fresh_sqlite(migrated_sqlite, lane_dir / "second.db")
    await seed(database)
    second = LoopbackEngine(database, memory_dir / "second")
    await second.start()
    try:
        await second.add_host("b1")
        yield second
    finally:
        await second.stop()
        await database.dispose()


def _request(name: str = "san1-imported", lun: str = "1") -> StorageDomainInput:
    return StorageDomainInput(name=name, storage_type=StorageType.ISCSI, host=Ref(name="b1"),
                              import_=True, logical_units=[LogicalUnitInput(
                                  id=lun, address=PORTAL, port=3260, target=iscsi.TARGET)])


async def _import(engine: LoopbackEngine, data: StorageDomainInput) -> Job:
    """What the API does: the host reads the LUN (a job it waits for), then the domain is
    recorded and its import job runs; the import job is returned once it has ended."""
    box = SecretBox(engine.settings.data_dir)
    reading = await engine.job((await engine.act(storage_shared.import_reading, box,
                                                 data)).id)
    assert reading.state == "done", reading.error
    found = dict(reading.result or {})
    data.logical_units[0].lun_mapping = found["lun"]
    domain = await engine.act(storage_shared.add_iscsi_domain, box, data, found=found)
    async with engine.session() as session:
        job = (await session.execute(select(Job).where(
            Job.action == "storage_domain.create"))).scalars().all()
    assert domain.status == StorageDomainStatus.LOCKED
    return await engine.job(job[-1].id)


async def _rows(engine: LoopbackEngine) -> tuple[int, int]:
    async with engine.session() as session:
        return ((await session.execute(select(func.count()).select_from(StorageDomain).where(
                    StorageDomain.storage_type == "iscsi"))).scalar_one(),
                (await session.execute(select(func.count()).select_from(Disk).where(
                    Disk.storage_domain_id.is_not(None)))).scalar_one())


async def test_a_detached_iscsi_domain_is_imported_by_another_engine_with_its_disks(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        migrated_sqlite: Path, lane_dir: Path, memory_dir: Path) -> None:
    _vm_id, disk_ids, lun = await iscsi._iscsi_vm(engine, monkeypatch, tmp_path,
                                                  lun_size=128 * MIB)
    [[boot], [data]] = await iscsi._chains(engine, lun, disk_ids)
    await asyncio.to_thread(lun.write, boot, "cow", "write -P 0x5a 0 64k")
    await asyncio.to_thread(lun.write, data, "raw", "write -P 0x33 0 64k")
    async with engine.session() as session:
        first = (await session.execute(select(StorageDomain).where(
            StorageDomain.name == "san1"))).scalar_one()
        shown = {d.id: (d.name, d.format, d.provisioned_size, d.image_path)
                 for d in (await session.execute(select(Disk).where(
                     Disk.storage_domain_id == first.id))).scalars()}
    async with _second_engine(migrated_sqlite, lane_dir, memory_dir) as second:
        ended = await _import(second, _request())
        assert ended.state == "done", ended.error
        assert ended.result == {"disks": 2, "kept_volumes": 0}
        async with second.session() as session:
            domain = await session.get(StorageDomain, first.id)  # it keeps its id
            assert domain is not None
            assert (domain.status, domain.storage_uuid, domain.path, domain.address) == (
                StorageDomainStatus.UNATTACHED, first.id, f"{iscsi.TARGET}/1", f"{PORTAL}:3260")
            assert (domain.used_bytes, domain.available_bytes) == (first.used_bytes,
                                                                   first.available_bytes)
            adopted = {d.id: (d.name, d.format, d.provisioned_size, d.image_path)
                       for d in (await session.execute(select(Disk).where(
                           Disk.storage_domain_id == first.id))).scalars()}
            assert adopted == shown  # ids, names, formats, sizes and extents
            assert (await session.execute(select(Lock))).all() == []
        taken = [extent_of(d[3]) for d in adopted.values()]
        # The allocator never hands the adopted extents out again.
        async with second.session() as session:
            domain = await session.get(StorageDomain, first.id)
            assert domain is not None
            fresh = extent_of(await allocate_extent(session, domain, uuid.uuid4(), "raw",
                                                    8 * MIB))
            assert fresh is not None and all(
                fresh[0] >= e[0] + e[1] or fresh[0] + fresh[1] <= e[0] for e in taken if e)
            domain.used_bytes, domain.available_bytes = first.used_bytes, first.available_bytes
        assert await asyncio.to_thread(lun.reads, boot, "cow", 0x5a, 0)
        assert await asyncio.to_thread(lun.reads, data, "raw", 0x33, 0)
        assert len([k for k in lun.metadata() if k.startswith("VOL_")]) == 2

        # The same domain again: this engine knows it (409); the LUN is used (409).
        before = await _rows(second)
        with pytest.raises(Conflict, match="already used by storage domain san1-imported"):
            await _import(second, _request("again"))
        assert await _rows(second) == before


async def test_an_import_keeps_snapshot_chains_on_the_lun_and_adopts_memory_as_shown(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        migrated_sqlite: Path, lane_dir: Path, memory_dir: Path) -> None:
    """A VM with a snapshot with memory: its disks' chains (two volumes each) are not
    adopted (the engine gives libvirt a disk's chain from its snapshots, which are not on
    the domain): their lines stay in the area, their extents taken; the memory volumes
    become memory disks named and sized as the first engine showed them."""
    vm_id, disk_ids, lun = await iscsi._iscsi_vm(engine, monkeypatch, tmp_path,
                                                 lun_size=1024 * MIB)
    await iscsi._running(engine, vm_id)
    taken, job = await engine.act(snapshots.add_snapshot, vm_id, "with, memory; too",
                                  persist_memory=True)
    await iscsi._done(engine, job)
    async with engine.session() as session:
        snapshot = await session.get(Snapshot, taken.id)
        assert snapshot is not None and snapshot.memory_domain_id is not None
        first = await session.get(StorageDomain, snapshot.memory_domain_id)
        assert first is not None
        shown = {m["id"]: (m["alias"], m["description"], m["provisioned_size"],
                           m["content_type"])
                 for m in map(memory_disk_view, await memory_disks(session,
                                                                   domain_id=first.id))}
    chains = await iscsi._chains(engine, lun, disk_ids)
    assert [len(c) for c in chains] == [2, 2]
    async with _second_engine(migrated_sqlite, lane_dir, memory_dir) as second:
        ended = await _import(second, _request())
        assert ended.state == "done", ended.error
        assert ended.result == {"disks": 2, "kept_volumes": 4}
        async with second.session() as session:
            domain = await session.get(StorageDomain, first.id)
            assert domain is not None
            adopted = {str(d.id): (d.name, d.description, d.provisioned_size, d.content_type)
                       for d in (await session.execute(select(Disk).where(
                           Disk.storage_domain_id == first.id))).scalars()}
            assert adopted == shown
            assert (domain.used_bytes, domain.available_bytes) == (first.used_bytes,
                                                                   first.available_bytes)
            assert set(domain.kept_volumes or {}) == {
                f"VOL_{p.rsplit('/', 1)[1]}" for c in chains for p in c}
        # The area this engine writes (an attach, a disk's creation) lists every volume
        # the first one listed, the memory volumes with their names, under the same id.
        before = lun.metadata()
        context: Any = type("Ctx", (), {"transaction": lambda self: second.session()})()
        rendered = parse_metadata(await storage_domains._lun_metadata(context, domain,
                                                                      pool=""))
        assert rendered["SDUUID"] == str(first.id)
        volumes = {k: v.split(",") for k, v in rendered.items() if k.startswith("VOL_")}
        assert {k: v[:8] for k, v in volumes.items()} == {
            k: v.split(",")[:8] for k, v in before.items() if k.startswith("VOL_")}


async def test_bad_imports_are_refused_with_nothing_recorded(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A LUN with no metadata area (400), a domain still attached to a data center (409),
    a LUN this engine uses already (409), a damaged area (400): no domain, no disk."""
    vm_id, _disk_ids, lun = await iscsi._iscsi_vm(engine, monkeypatch, tmp_path,
                                                  lun_size=64 * MIB)
    blank = tmp_path / "blank.img"
    await asyncio.to_thread(blank.write_bytes, b"")
    await asyncio.to_thread(os.truncate, blank, 64 * MIB)
    before = await _rows(engine)
    request = _request("other")
    request.host = Ref(name="h1")
    with pytest.raises(Conflict, match="storage domain san1"):  # by its LUN, or its id
        await _import(engine, request)
    assert await _rows(engine) == before

    # LUN 2: blank, no Overt domain on it.
    real_window = lun.window
    monkeypatch.setattr(iscsi_domain, "window", lambda ref, offset, size, fmt=None: (
        real_window(ref, offset, size, fmt).replace(str(lun.path), str(blank))
        if ref.lun == 2 else real_window(ref, offset, size, fmt)))
    monkeypatch.setattr(iscsi_domain, "lun_url", lambda ref: str(blank if ref.lun == 2
                                                                 else lun.path))
    request = _request("other", lun="2")
    request.host = Ref(name="h1")
    with pytest.raises(InvalidInput, match="holds no Overt storage domain"):
        await _import(engine, request)
    assert await _rows(engine) == before

    # LUN 2 holding a copy of san1's area, attached to a data center: 409; damaged: 400.
    area = lun.path.read_bytes()[:MIB]
    text = area.split(b"\0", 1)[0].decode()
    attached = text.replace("POOL_UUID=\n", f"POOL_UUID={uuid.uuid4()}\n")
    for content, error, match in ((attached, Conflict, "still attached to data center"),
                                  (text.replace("VOL_", "VOL_X", 1), InvalidInput,
                                   "damaged")):
        with blank.open("r+b") as f:
            f.write(content.encode().ljust(MIB, b"\0"))
        with pytest.raises(error, match=match):
            await _import(engine, request)
        assert await _rows(engine) == before
    async with engine.session() as session:
        assert (await session.execute(select(Lock))).all() == []
    del vm_id


async def test_an_engine_that_dies_mid_import_leaves_it_to_a_successor(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        migrated_sqlite: Path, lane_dir: Path, memory_dir: Path) -> None:
    """The import job is reading the LUN when its engine dies: the domain is `locked`
    with no disk; the successor reads again and adopts; nothing stays locked."""
    _vm_id, disk_ids, _lun = await iscsi._iscsi_vm(engine, monkeypatch, tmp_path,
                                                   lun_size=64 * MIB)
    async with _second_engine(migrated_sqlite, lane_dir, memory_dir) as second:
        box = SecretBox(second.settings.data_dir)
        data = _request()
        reading = await second.job((await second.act(storage_shared.import_reading, box,
                                                     data)).id)
        found = dict(reading.result or {})
        data.logical_units[0].lun_mapping = found["lun"]
        real, go_on, reading_now = iscsi_domain.execute, threading.Event(), asyncio.Event()
        calls = []

        async def stalls_first(command: Any) -> Any:
            if isinstance(command, LunRead) and not calls:
                calls.append(command)
                reading_now.set()
                await asyncio.to_thread(go_on.wait, 60)
            return await real(command)
        monkeypatch.setattr(iscsi_domain, "execute", stalls_first)
        domain = await second.act(storage_shared.add_iscsi_domain, box, data, found=found)
        await asyncio.wait_for(reading_now.wait(), 30)
        await second.worker.stop()
        async with second.session() as session:
            job = (await session.execute(select(Job).where(
                Job.action == "storage_domain.create"))).scalar_one()
            row = await session.get(StorageDomain, domain.id)
            assert row is not None and row.status == StorageDomainStatus.LOCKED
            assert (await session.execute(select(func.count()).select_from(Disk).where(
                Disk.storage_domain_id == domain.id))).scalar_one() == 0
            job.lease_until = job.start_time
        ended = await second.successor_ends(job.id, go_on)  # type: ignore[arg-type]
        assert ended.state == "done", ended.error
        async with second.session() as session:
            row = await session.get(StorageDomain, domain.id)
            assert row is not None and row.status == StorageDomainStatus.UNATTACHED
            assert {d.id for d in (await session.execute(select(Disk).where(
                Disk.storage_domain_id == domain.id))).scalars()} == set(disk_ids)
            assert (await session.execute(select(Lock))).all() == []
