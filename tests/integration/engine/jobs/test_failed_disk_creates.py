"""A disk create that fails its last retry is rolled back as oVirt's AddDisk is: the disk
is gone at once (with its attachment, or the template it was imported for), and a removal
job takes what was made of its image off storage (the local directory, the NFS export or
the LUN, whose extent stays reserved until then), saying why. Nothing is left `locked` or
`illegal`, even when the engine dies during the removal."""

from __future__ import annotations

import asyncio
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
    StorageDomain,
    Template,
    User,
    Vm,
)
from overt.engine.jobs import queue
from overt.engine.jobs.handlers import leftovers
from overt.engine.queries.lookup import Ref
from overt.engine.services import devices, templates
from overt.engine.services.inputs import DiskAttachmentInput, DiskInput
from overt.node.errors import NodeFailure
from overt.node.storage import iscsi_domain, nfs_domain
from overt.node.storage.local import LocalVolumes
from overt.protocol import ErrorCode
from overt.protocol.commands import VolumeCreate
from tests.integration.engine.jobs import test_iscsi_snapshot_jobs as on_iscsi
from tests.integration.engine.jobs import test_nfs_snapshot_jobs as on_nfs
from tests.support.loopback import LoopbackEngine

MIB = 1 << 20


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def _create_failed_for_good(engine: LoopbackEngine, disk_id: uuid.UUID) -> None:
    """The disk's create job failed all its tries; from that commit on the disk is gone
    (GET /disks/{id} is a 404), never `illegal`."""
    async with engine.session() as session:
        [job] = [j for j in (await session.execute(select(Job).where(
            Job.action == "disk.create"))).scalars() if j.params["disk_id"] == str(disk_id)]
    ended = await engine.job(job.id)
    assert ended.state == "failed" and "stopped answering" in (ended.error or "")
    assert ended.attempts == ended.max_attempts
    async with engine.session() as session:
        assert await session.get(Disk, disk_id) is None
        assert (await session.execute(select(DiskAttachment).where(
            DiskAttachment.disk_id == disk_id))).first() is None


async def _cleaned(engine: LoopbackEngine, name: str, domain: str) -> None:
    """No lock, reservation or failed removal is left; the events say why the create
    failed, that the disk was removed and what was taken off storage."""
    async with engine.session() as session:
        assert (await session.execute(select(Lock))).all() == []
        assert (await session.execute(select(func.count()).select_from(ExtentReservation))
                ).scalar_one() == 0
        failed = (await session.execute(select(Job.action).where(Job.state == "failed"))
                  ).scalars().all()
        assert failed == ["disk.create"]
        said = (await session.execute(select(AuditEvent.code, AuditEvent.description))).all()
    create = [d for c, d in said if c == audit.DISK_ADD_FAILED]
    assert len(create) == 1 and create[0].startswith(f"Creating disk {name} failed: ")
    assert "stopped answering" in create[0] and "The disk was removed" in create[0]
    removed = [d for c, d in said if c == audit.LEFTOVER_VOLUMES_REMOVED]
    assert len(removed) == 1, removed
    assert f"Removed 1 volume(s) left on storage domain(s) {domain}" in removed[0]
    assert "stopped answering" in removed[0]


async def test_a_vms_disk_failing_its_last_retry_on_nfs_is_removed_with_its_volume(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(queue, "MAX_BACKOFF_S", 0.05)
    vm_id, disk_ids, export = await on_nfs._nfs_vm(engine, monkeypatch, tmp_path / "nfs")
    before = await on_nfs._chains(engine, export, disk_ids)
    files = await asyncio.to_thread(_files, export)

    def unreachable(storage: Any, relative: str, meta: dict[str, str]) -> None:
        raise NodeFailure(ErrorCode.STORAGE_UNREACHABLE, "the export stopped answering")
    monkeypatch.setattr(nfs_domain, "finish_volume", unreachable)  # data made, .meta not
    async with engine.session() as session:
        vm, user = await session.get(Vm, vm_id), await session.get(User, engine.user_id)
        assert vm is not None and user is not None
        attachment = await devices.add_disk_attachment(session, engine.jobs, vm, (
            DiskAttachmentInput(disk=DiskInput(name="extra", provisioned_size=8 * MIB,
                                               format="cow", storage_domain=Ref(name="nfs1")))),
            user)

    await _create_failed_for_good(engine, attachment.disk_id)
    await engine.settled()
    assert await asyncio.to_thread(_files, export) == files
    assert await on_nfs._chains(engine, export, disk_ids) == before  # the VM's other disks
    await _cleaned(engine, "extra", "nfs1")
    async with engine.session() as session:
        event = (await session.execute(select(AuditEvent).where(
            AuditEvent.code == audit.DISK_ADD_FAILED))).scalar_one()
    assert event.vm_id == vm_id and "removed from VM nfs-snappy" in event.description


async def _floating_on_san(engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch,
                           tmp_path: Path) -> tuple[uuid.UUID, list[uuid.UUID], Any, int]:
    """A floating disk on san1 whose every format is half done when the target stops
    answering; its id, the VM's disks, the LUN and the domain's free space before it."""
    _vm_id, disk_ids, lun = await on_iscsi._iscsi_vm(engine, monkeypatch, tmp_path,
                                                     lun_size=128 * MIB)
    free = await on_iscsi._free(engine)
    real = iscsi_domain._format

    async def half_made(command: Any) -> Any:
        await real(command)
        raise NodeFailure(ErrorCode.STORAGE_UNREACHABLE, "the target stopped answering")
    monkeypatch.setattr(iscsi_domain, "_format", half_made)
    disk = await engine.act(devices.add_disk, DiskInput(
        name="floating", provisioned_size=8 * MIB, format="cow",
        storage_domain=Ref(name="san1")))
    assert await on_iscsi._free(engine) == free - 13 * MIB
    return disk.id, disk_ids, lun, free


async def test_a_disk_failing_its_last_retry_on_iscsi_frees_its_extent(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(queue, "MAX_BACKOFF_S", 0.05)
    disk_id, disk_ids, lun, free = await _floating_on_san(engine, monkeypatch, tmp_path)
    before = await on_iscsi._chains(engine, lun, disk_ids)

    await _create_failed_for_good(engine, disk_id)
    await engine.settled()
    # The metadata area lists the VM's disks only; the extent is free.
    assert await on_iscsi._chains(engine, lun, disk_ids) == before
    assert await on_iscsi._free(engine) == free
    await _cleaned(engine, "floating", "san1")


async def test_an_engine_dying_while_rolling_back_a_disk_create_leaves_it_to_a_successor(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The volume is off the LUN's records when the engine dies: the disk is already gone
    and its extent still reserved; a successor runs the removal again and frees it, once."""
    monkeypatch.setattr(queue, "MAX_BACKOFF_S", 0.05)
    disk_id, disk_ids, lun, free = await _floating_on_san(engine, monkeypatch, tmp_path)
    before = await on_iscsi._chains(engine, lun, disk_ids)
    real_remove, removed = leftovers._remove, asyncio.Event()

    async def dies_after(*args: Any) -> None:
        await real_remove(*args)
        if not removed.is_set():
            removed.set()
            await asyncio.Event().wait()  # the engine is gone before it records anything
    monkeypatch.setattr(leftovers, "_remove", dies_after)
    await _create_failed_for_good(engine, disk_id)
    await asyncio.wait_for(removed.wait(), 60)
    await engine.worker.stop()
    assert await on_iscsi._free(engine) == free - 13 * MIB  # reserved until recorded
    async with engine.session() as session:
        removal = (await session.execute(select(Job).where(
            Job.action == "storage.remove_volumes"))).scalar_one()
        assert removal.state == "running"
        removal.lease_until = removal.start_time  # its lease lapsed long ago

    ended = await engine.successor_ends(removal.id)
    assert ended.state == "done", ended.error
    assert await on_iscsi._chains(engine, lun, disk_ids) == before
    assert await on_iscsi._free(engine) == free
    await _cleaned(engine, "floating", "san1")


def _half_made_files(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every local create writes part of its file, then the disk stops answering."""
    asked: list[str] = []

    async def half_made(self: LocalVolumes, command: VolumeCreate) -> Any:
        path = self.inside(command.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"QFI\xfb half")
        asked.append(str(path))
        raise NodeFailure(ErrorCode.STORAGE_UNREACHABLE, "the disk stopped answering")
    monkeypatch.setattr(LocalVolumes, "create", half_made)
    return asked


async def _local_root(engine: LoopbackEngine) -> Path:
    async with engine.session() as session:
        domain = (await session.execute(select(StorageDomain))).scalar_one()
    return Path(domain.path)


async def test_a_disk_failing_its_last_retry_on_a_local_domain_is_removed_with_its_file(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue, "MAX_BACKOFF_S", 0.05)
    await engine.add_host("h1")
    root = await _local_root(engine)
    files = await asyncio.to_thread(_files, root)
    asked = _half_made_files(monkeypatch)
    disk = await engine.act(devices.add_disk, DiskInput(
        name="data", provisioned_size=8 * MIB, format="cow", storage_domain=Ref(name="h1-local")))

    await _create_failed_for_good(engine, disk.id)
    await engine.settled()
    assert asked and await asyncio.to_thread(_files, root) == files
    await _cleaned(engine, "data", "h1-local")


async def test_a_template_whose_import_fails_is_removed_with_its_disk(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A template imported from an image is made by its one disk's create: it goes too."""
    monkeypatch.setattr(queue, "MAX_BACKOFF_S", 0.05)
    await engine.add_host("h1")
    root = await _local_root(engine)
    files = await asyncio.to_thread(_files, root)
    asked = _half_made_files(monkeypatch)
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        domain = (await session.execute(select(StorageDomain))).scalar_one()
        assert user is not None
        template = await templates.import_image_template(
            session, engine.jobs, name="guest", image_path="/images/guest.qcow2",
            size_bytes=8 * MIB, storage_domain=domain, user=user)
        disk_id = (await session.execute(select(Disk.id).where(
            Disk.template_id == template.id))).scalar_one()

    await _create_failed_for_good(engine, disk_id)
    async with engine.session() as session:
        assert await session.get(Template, template.id) is None
        said = (await session.execute(select(AuditEvent.description).where(
            AuditEvent.code == audit.TEMPLATE_ADD_FAILED))).scalars().all()
    assert len(said) == 1 and said[0].startswith("Creating template guest failed: ")
    await engine.settled()
    assert asked and await asyncio.to_thread(_files, root) == files
    await _cleaned(engine, "guest_disk1", "h1-local")
