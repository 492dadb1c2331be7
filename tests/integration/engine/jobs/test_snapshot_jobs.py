"""Snapshot jobs over the fast lane: real qcow2 volumes (qemu-img) on a simulated host's
local domain. Taken and removed on a down VM and on a running one, the chain the database
records is the chain on storage, the data written before a removal is still there after,
and refused requests change nothing."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from overt.engine.db.tables import (
    Disk,
    Job,
    Snapshot,
    SnapshotVolume,
    Step,
    StorageDomain,
    User,
    Vm,
)
from overt.engine.model.errors import Conflict, NotFound
from overt.engine.model.status import StorageDomainStatus, VmStatus
from overt.engine.queries.lookup import Ref
from overt.engine.queries.snapshot_chains import disk_chain, volume_location
from overt.engine.services import devices, snapshots, vms
from overt.engine.services.inputs import DiskAttachmentInput, DiskInput
from overt.node.simulated.hypervisor import SimulatedHypervisor
from tests.support.loopback import LoopbackEngine

MIB = 1 << 20


def storage_chain(path: str) -> list[str]:
    """The chain qemu-img finds on storage, base first."""
    out = subprocess.run(["qemu-img", "info", "-U", "--backing-chain", "--output=json", path],
                         check=True, capture_output=True, text=True).stdout
    return [layer["filename"] for layer in reversed(json.loads(out))]


def qemu_io(path: str, command: str) -> None:
    subprocess.run(["qemu-io", "-f", "qcow2" if path.endswith("qcow2") else "raw",
                    "-c", command, path], check=True, capture_output=True)


def reads(path: str, fmt: str, pattern: int, offset: int) -> bool:
    done = subprocess.run(["qemu-io", "-r", "-f", fmt, "-c",
                           f"read -P {pattern} {offset} 64k", path], capture_output=True,
                          text=True)
    return done.returncode == 0 and "Pattern verification failed" not in done.stdout


async def _vm_with_disks(engine: LoopbackEngine) -> tuple[uuid.UUID, list[uuid.UUID]]:
    await engine.add_host("h1")
    vm_id = await engine.add_vm("snappy")
    disk_ids = []
    for name, fmt in (("boot", "cow"), ("data", "raw")):
        async with engine.session() as session:
            vm = await session.get(Vm, vm_id)
            user = await session.get(User, engine.user_id)
            assert vm is not None and user is not None
            attachment = await devices.add_disk_attachment(
                session, engine.jobs, vm, DiskAttachmentInput(
                    disk=DiskInput(name=name, provisioned_size=8 * MIB, format=fmt,
                                   storage_domain=Ref(name="h1-local")),
                    bootable=name == "boot"), user)
            disk_ids.append(attachment.disk_id)
    await engine.settled()
    return vm_id, disk_ids


async def _chains(engine: LoopbackEngine, disk_ids: list[uuid.UUID]
                  ) -> list[tuple[list[str], list[str], str]]:
    """Per disk: the chain in the database, the chain on storage, the disk's format."""
    found = []
    async with engine.session() as session:
        for disk_id in disk_ids:
            disk = await session.get(Disk, disk_id)
            assert disk is not None
            domain = await session.get(StorageDomain, disk.storage_domain_id)
            assert domain is not None
            recorded = [volume_location(domain, p) for p in await disk_chain(session, disk)]
            found.append((recorded, storage_chain(recorded[-1]), disk.format))
    return found


async def _snapshot(engine: LoopbackEngine, vm_id: uuid.UUID, description: str) -> uuid.UUID:
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        assert user is not None
        snapshot, job = await snapshots.add_snapshot(session, engine.jobs, vm_id, description,
                                                     user)
    assert (await engine.job(job.id)).state == "done", (await engine.job(job.id)).error
    return snapshot.id


async def _remove(engine: LoopbackEngine, vm_id: uuid.UUID, snapshot_id: uuid.UUID) -> None:
    job = await engine.act(snapshots.remove_snapshot, vm_id, snapshot_id)
    ended = await engine.job(job.id)
    assert ended.state == "done", ended.error


def _check_clean(path: str) -> None:
    subprocess.run(["qemu-img", "check", "-U", path], check=True, capture_output=True)


async def test_snapshots_of_a_down_vm_are_taken_and_merged_away_with_qemu_img(
        engine: LoopbackEngine) -> None:
    vm_id, disk_ids = await _vm_with_disks(engine)
    [(boot_before, _s, _f), (data_before, _s2, _f2)] = await _chains(engine, disk_ids)
    qemu_io(boot_before[-1], "write -P 0x11 0 64k")
    qemu_io(data_before[-1], "write -P 0x11 0 64k")

    first = await _snapshot(engine, vm_id, "before upgrade")
    chains = await _chains(engine, disk_ids)
    for recorded, on_storage, fmt in chains:
        assert recorded == on_storage and len(recorded) == 2 and fmt == "cow"
    for recorded, _on_storage, _fmt in chains:
        qemu_io(recorded[-1], "write -P 0x22 65536 64k")

    second = await _snapshot(engine, vm_id, "after upgrade")
    for recorded, on_storage, _fmt in await _chains(engine, disk_ids):
        assert recorded == on_storage and len(recorded) == 3
        qemu_io(recorded[-1], "write -P 0x33 131072 64k")

    await _remove(engine, vm_id, first)  # its volume takes the data of the one over it
    for recorded, on_storage, _fmt in await _chains(engine, disk_ids):
        assert recorded == on_storage and len(recorded) == 2
    await _remove(engine, vm_id, second)  # the active volume merged into the base
    final = await _chains(engine, disk_ids)
    assert [c[0] for c in final] == [boot_before, data_before]
    assert [(c[1], c[2]) for c in final] == [(boot_before, "cow"), (data_before, "raw")]
    for (path, *_rest), fmt in ((boot_before, "qcow2"), (data_before, "raw")):
        assert reads(path, fmt, 0x11, 0) and reads(path, fmt, 0x22, 65536)
        assert reads(path, fmt, 0x33, 131072)
    _check_clean(boot_before[-1])
    images = Path(boot_before[-1]).parent
    assert sorted(p.name for p in images.iterdir()) == sorted(
        Path(p).name for p in (boot_before[-1], data_before[-1]))
    async with engine.session() as session:
        assert (await session.execute(select(func.count()).select_from(Snapshot))).scalar() == 0
        assert (await session.execute(select(func.count()).select_from(SnapshotVolume))
                ).scalar() == 0


async def test_a_running_vms_snapshot_is_taken_and_merged_live_on_its_host(
        engine: LoopbackEngine) -> None:
    vm_id, disk_ids = await _vm_with_disks(engine)
    start = await engine.act(vms.start_vm, vm_id)
    assert (await engine.job(start.id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    hyp = engine.hosts["h1"].hypervisor
    assert isinstance(hyp, SimulatedHypervisor)
    [(boot_before, _s, _f), _data] = await _chains(engine, disk_ids)

    taken = await _snapshot(engine, vm_id, "live")
    chains = await _chains(engine, disk_ids)
    for recorded, on_storage, _fmt in chains:
        assert recorded == on_storage and len(recorded) == 2
    # The host's QEMU writes the new volumes (what its live chain says).
    assert sorted(c[0] for c in hyp._vms[vm_id].chains) == sorted(c[0][-1] for c in chains)
    qemu_io(chains[0][0][-1], "write -P 0x44 0 64k")
    async with engine.session() as session:
        steps = [s.description for s in (await session.execute(
            select(Step).join(Job, Job.id == Step.job_id)
            .where(Job.action == "vm.snapshot"))).scalars()]
    assert steps == ["Taking a snapshot of the disks of VM snappy"]  # one atomic node call

    await _remove(engine, vm_id, taken)  # an active commit, then the pivot to the base
    final = await _chains(engine, disk_ids)
    assert final[0][0] == boot_before and final[0][1] == boot_before
    assert reads(boot_before[-1], "qcow2", 0x44, 0)
    assert sorted(c[0] for c in hyp._vms[vm_id].chains) == sorted(c[0][-1] for c in final)
    _check_clean(boot_before[-1])
    assert (await engine.vm(vm_id)).status == VmStatus.UP


async def test_refused_snapshot_requests_change_nothing(engine: LoopbackEngine) -> None:
    vm_id, disk_ids = await _vm_with_disks(engine)
    taken = await _snapshot(engine, vm_id, "keep")
    before = await _chains(engine, disk_ids)

    async def jobs_and_snapshots() -> tuple[int, int]:
        async with engine.session() as session:
            return ((await session.execute(select(func.count()).select_from(Job))).scalar_one(),
                    (await session.execute(select(func.count()).select_from(Snapshot))
                     ).scalar_one())
    counted = await jobs_and_snapshots()

    with pytest.raises(NotFound, match="has no snapshot"):
        await engine.act(snapshots.remove_snapshot, vm_id, uuid.uuid4())
    with pytest.raises(Conflict, match="Cannot remove the Active VM snapshot"):
        await engine.act(snapshots.remove_snapshot, vm_id, snapshots.active_snapshot_id(vm_id))
    async with engine.session() as session:
        domain = (await session.execute(select(StorageDomain).where(
            StorageDomain.name == "h1-local"))).scalar_one()
        domain.status = StorageDomainStatus.MAINTENANCE
    with pytest.raises(Conflict, match=r"storage domain h1-local .* is maintenance"):
        await engine.act(snapshots.add_snapshot, vm_id, "while in maintenance")
    with pytest.raises(Conflict, match="is maintenance"):
        await engine.act(snapshots.remove_snapshot, vm_id, taken)

    assert await jobs_and_snapshots() == counted
    assert await _chains(engine, disk_ids) == before
    async with engine.session() as session:
        snapshot = await session.get(Snapshot, taken)
        assert snapshot is not None and snapshot.status == "ok"


async def test_a_down_vm_is_restored_to_a_snapshot_and_later_ones_are_dropped(
        engine: LoopbackEngine) -> None:
    vm_id, disk_ids = await _vm_with_disks(engine)
    [(boot, _s, _f), _data] = await _chains(engine, disk_ids)
    qemu_io(boot[-1], "write -P 0x11 0 64k")
    first = await _snapshot(engine, vm_id, "good")
    chains = await _chains(engine, disk_ids)
    qemu_io(chains[0][0][-1], "write -P 0x22 0 64k")
    await _snapshot(engine, vm_id, "bad")
    [(after_second, _s, _f), _data] = await _chains(engine, disk_ids)
    qemu_io(after_second[-1], "write -P 0x33 0 64k")

    start = await engine.act(vms.start_vm, vm_id)
    assert (await engine.job(start.id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    with pytest.raises(Conflict, match="the VM is up; shut it down first"):
        await engine.act(snapshots.restore_snapshot, vm_id, first)
    stop = await engine.act(vms.stop_vm, vm_id)
    assert (await engine.job(stop.id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.DOWN])

    job = await engine.act(snapshots.restore_snapshot, vm_id, first)
    ended = await engine.job(job.id)
    assert ended.state == "done", ended.error
    restored = await _chains(engine, disk_ids)
    for recorded, on_storage, fmt in restored:
        assert recorded == on_storage and len(recorded) == 2 and fmt == "cow"
    assert restored[0][0][0] == boot[0]  # the snapshot's volume, under a new one
    assert reads(restored[0][0][-1], "qcow2", 0x11, 0)  # what the disk held at "good"
    async with engine.session() as session:
        left = [s.description for s in (await session.execute(select(Snapshot))).scalars()]
    assert left == ["good"]
    images = Path(boot[-1]).parent
    assert sorted(p.name for p in images.iterdir()) == sorted(
        Path(p).name for c in restored for p in c[0])
    _check_clean(restored[0][0][-1])


async def test_removing_a_disk_or_the_vm_removes_its_snapshots_volumes(
        engine: LoopbackEngine) -> None:
    vm_id, disk_ids = await _vm_with_disks(engine)
    await _snapshot(engine, vm_id, "one")
    await _snapshot(engine, vm_id, "two")
    [(boot, _s, _f), _data] = await _chains(engine, disk_ids)
    images = Path(boot[-1]).parent
    assert len(list(images.iterdir())) == 6

    async with engine.session() as session:
        vm = await session.get(Vm, vm_id)
        user = await session.get(User, engine.user_id)
        assert vm is not None and user is not None
        await devices.remove_disk_attachment(session, engine.jobs, vm, disk_ids[1], user,
                                             detach_only=False)
    await engine.settled()
    assert sorted(p.name for p in images.iterdir()) == sorted(Path(p).name for p in boot)
    async with engine.session() as session:
        left = (await session.execute(select(SnapshotVolume.disk_id))).scalars().all()
    assert set(left) == {disk_ids[0]}

    removal = await engine.act(vms.remove_vm, vm_id)
    assert (await engine.job(removal.id)).state == "done"
    assert list(images.iterdir()) == []
    async with engine.session() as session:
        assert (await session.execute(select(func.count()).select_from(Snapshot))).scalar() == 0


async def _ended(engine: LoopbackEngine, job: Job) -> None:
    ended = await engine.job(job.id)
    assert ended.state == "done", ended.error


async def _statuses(engine: LoopbackEngine) -> list[tuple[str, str, str]]:
    async with engine.session() as session:
        return [(s.description, s.kind, s.status) for s in (await session.execute(
            select(Snapshot).order_by(Snapshot.created_at))).scalars()]


async def test_a_preview_is_undone_then_committed_on_a_down_vm(engine: LoopbackEngine) -> None:
    vm_id, disk_ids = await _vm_with_disks(engine)
    [(boot, _s, _f), _data] = await _chains(engine, disk_ids)
    qemu_io(boot[-1], "write -P 0x11 0 64k")
    good = await _snapshot(engine, vm_id, "good")
    qemu_io((await _chains(engine, disk_ids))[0][0][-1], "write -P 0x22 0 64k")
    later = await _snapshot(engine, vm_id, "later")
    before = await _chains(engine, disk_ids)
    qemu_io(before[0][0][-1], "write -P 0x33 0 64k")
    images = Path(boot[-1]).parent

    await _ended(engine, await engine.act(snapshots.preview_snapshot, vm_id, good))
    previewing = await _chains(engine, disk_ids)
    for recorded, on_storage, _fmt in previewing:
        assert recorded == on_storage and len(recorded) == 2
    assert previewing[0][0][0] == boot[0] and reads(previewing[0][0][-1], "qcow2", 0x11, 0)
    assert await _statuses(engine) == [("good", "regular", "in_preview"),
                                       ("later", "regular", "ok"),
                                       ("Active VM before the preview", "preview", "ok")]
    assert len(list(images.iterdir())) == 8  # every volume kept until commit or undo
    with pytest.raises(Conflict, match="it is previewing snapshot 'good'"):
        await engine.act(snapshots.add_snapshot, vm_id, "during the preview")
    with pytest.raises(Conflict, match="commit or undo the preview first"):
        await engine.act(snapshots.remove_snapshot, vm_id, later)

    await _ended(engine, await engine.act(snapshots.end_preview, vm_id, commit=False))
    assert await _chains(engine, disk_ids) == before
    assert reads(before[0][0][-1], "qcow2", 0x33, 0)
    assert await _statuses(engine) == [("good", "regular", "ok"), ("later", "regular", "ok")]
    assert len(list(images.iterdir())) == 6

    await _ended(engine, await engine.act(snapshots.preview_snapshot, vm_id, good))
    await _ended(engine, await engine.act(snapshots.end_preview, vm_id, commit=True))
    committed = await _chains(engine, disk_ids)
    for recorded, on_storage, _fmt in committed:
        assert recorded == on_storage and len(recorded) == 2
    assert reads(committed[0][0][-1], "qcow2", 0x11, 0)
    assert await _statuses(engine) == [("good", "regular", "ok")]
    assert sorted(p.name for p in images.iterdir()) == sorted(
        Path(p).name for c in committed for p in c[0])
    with pytest.raises(Conflict, match="it previews no snapshot"):
        await engine.act(snapshots.end_preview, vm_id, commit=True)
