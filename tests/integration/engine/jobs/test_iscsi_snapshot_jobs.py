"""Snapshots of a down VM whose disks are on an iSCSI domain, over the fast lane: the
node's iSCSI code runs with the LUN kept as a local file (QEMU's `file` driver under the
same `raw` offset/size window the `iscsi` driver sits under on a real target), qemu-img
on the real extents. Each new volume is an extent the engine allocated; the chain the
database records is the chain qemu-img reads and the one the LUN's metadata area lists;
a merge frees the merged volume's extent; a job that fails gives its extents back."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from overt.engine.db.tables import (
    Disk,
    ExtentReservation,
    Job,
    Lock,
    Snapshot,
    StorageDomain,
    User,
    Vm,
)
from overt.engine.jobs.handlers import snapshots as snapshot_handlers
from overt.engine.model.errors import Conflict
from overt.engine.model.status import StorageDomainStatus, StorageType, VmStatus
from overt.engine.queries.lookup import Ref
from overt.engine.queries.shared_storage import extent_of
from overt.engine.queries.snapshot_chains import all_volumes, disk_chain
from overt.engine.queries.vm_spec import build_vm_spec
from overt.engine.secrets import Secret
from overt.engine.services import devices, snapshots, vms
from overt.engine.services.inputs import DiskAttachmentInput, DiskInput
from overt.node.errors import NodeFailure
from overt.node.simulated.hypervisor import SimulatedHypervisor
from overt.node.storage import iscsi_domain
from overt.protocol import ErrorCode
from overt.protocol.ovirt_metadata import parse_metadata
from overt.protocol.storage import (
    DOMAIN_AREA,
    METADATA_AREA,
    IscsiLunRef,
    parse_extent_location,
)
from overt.protocol.vm import DiskFormat, IscsiSource
from tests.support.loopback import LoopbackEngine

MIB = 1 << 20
TOP = "00000000-0000-0000-0000-000000000000"
TARGET = "iqn.2026-11.dev.overt:lun"


class Lun:
    """A LUN kept as a file; the node's iSCSI code reads and writes it through `window`."""

    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.path = path
        monkeypatch.setattr(iscsi_domain, "window", self.window)
        monkeypatch.setattr(iscsi_domain, "lun_url", lambda lun: str(path))

    def window(self, lun: IscsiLunRef, offset: int, size: int,
               fmt: DiskFormat | None = None) -> str:
        raw = (f"driver=raw,offset={offset},size={size},file.driver=file,"
               f"file.filename={self.path},file.locking=off")
        if fmt is None or fmt is DiskFormat.RAW:
            return raw
        return f"driver={fmt.value}," + ",".join(f"file.{part}" for part in raw.split(","))

    def opts(self, image_path: str, fmt: str) -> str:
        extent = extent_of(image_path)
        assert extent is not None
        return self.window(LUN, extent[0], extent[1],
                           DiskFormat.QCOW2 if fmt == "cow" else DiskFormat.RAW)

    def storage_chain(self, image_path: str) -> list[int]:
        """The offsets of the volumes qemu-img reads under the active one, base first."""
        out = subprocess.run(["qemu-img", "info", "-U", "--backing-chain", "--output=json",
                              "--image-opts", self.opts(image_path, "cow")],
                             check=True, capture_output=True, text=True).stdout
        return [_offset(json.loads(layer["filename"].removeprefix("json:")))
                for layer in reversed(json.loads(out))]

    def metadata(self) -> dict[str, str]:
        with self.path.open("rb") as f:  # the metadata area only, not the whole LUN
            area = f.read(METADATA_AREA)
        return parse_metadata(area.split(b"\0", 1)[0].decode())

    def write(self, image_path: str, fmt: str, command: str) -> None:
        subprocess.run(["qemu-io", "--image-opts", "-c", command, self.opts(image_path, fmt)],
                       check=True, capture_output=True)

    def reads(self, image_path: str, fmt: str, pattern: int, offset: int) -> bool:
        done = subprocess.run(["qemu-io", "-r", "--image-opts", "-c",
                               f"read -P {pattern} {offset} 64k", self.opts(image_path, fmt)],
                              capture_output=True, text=True, check=False)
        return done.returncode == 0 and "Pattern verification failed" not in done.stdout


LUN = IscsiLunRef(portal="10.9.9.9", target=TARGET, lun=1)


def _offset(tree: Any) -> int:
    while "offset" not in tree:
        tree = tree["file"]
    return int(tree["offset"])


async def _iscsi_vm(engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                    *, lun_size: int) -> tuple[uuid.UUID, list[uuid.UUID], Lun]:
    """A down VM with a qcow2 and a raw disk of 8 MiB on an active iSCSI domain."""
    lun = Lun(tmp_path / "lun1.img", monkeypatch)
    await asyncio.to_thread(subprocess.run, ["truncate", "-s", str(lun_size), str(lun.path)],
                            check=True)
    await engine.add_host("h1")
    async with engine.session() as session:
        host_id = (await session.execute(select(StorageDomain.host_id))).scalar_one()
        session.add(StorageDomain(id=uuid.uuid4(), name="san1",
                                  storage_type=StorageType.ISCSI.value, address="10.9.9.9",
                                  path=f"{TARGET}/1", host_id=host_id,
                                  status=StorageDomainStatus.ACTIVE.value, used_bytes=0,
                                  available_bytes=lun_size - DOMAIN_AREA))
    vm_id = await engine.add_vm("san-snappy")
    disk_ids = []
    for name, fmt in (("boot", "cow"), ("data", "raw")):
        async with engine.session() as session:
            vm = await session.get(Vm, vm_id)
            user = await session.get(User, engine.user_id)
            assert vm is not None and user is not None
            attachment = await devices.add_disk_attachment(
                session, engine.jobs, vm, DiskAttachmentInput(
                    disk=DiskInput(name=name, provisioned_size=8 * MIB, format=fmt,
                                   storage_domain=Ref(name="san1")),
                    bootable=name == "boot"), user)
            disk_ids.append(attachment.disk_id)
    await engine.settled()
    return vm_id, disk_ids, lun


async def _chains(engine: LoopbackEngine, lun: Lun, disk_ids: list[uuid.UUID]
                  ) -> list[list[str]]:
    """Per disk, its chain (base first) as the database records it, checked against the
    chain qemu-img reads on the LUN and the one its metadata area lists."""
    metadata = lun.metadata()
    listed = {key.removeprefix("VOL_"): value.split(",") for key, value in metadata.items()
              if key.startswith("VOL_")}
    found, volumes = [], set()
    async with engine.session() as session:
        for disk_id in disk_ids:
            disk = await session.get(Disk, disk_id)
            assert disk is not None
            chain = await disk_chain(session, disk)
            offsets = [extent_of(p)[0] for p in chain]  # type: ignore[index]
            if disk.format == "cow":  # a raw volume is the extent itself
                assert offsets == await asyncio.to_thread(lun.storage_chain, chain[-1])
            ids = [p.rsplit("/", 1)[1] for p in chain]
            assert [listed[i][6] for i in ids] == [TOP, *ids[:-1]]  # each volume's parent
            assert [listed[i][7] for i in ids] == ["INTERNAL"] * (len(ids) - 1) + ["LEAF"]
            assert [int(listed[i][1]) for i in ids] == offsets
            assert {listed[i][0] for i in ids} == {str(disk_id)}  # the disk's image
            # ... and those a preview keeps off the chain
            volumes |= {p.rsplit("/", 1)[1] for p in await all_volumes(session, disk)}
            found.append(chain)
    disks_listed = {k for k, v in listed.items() if len(v) == 8}  # memory lines say MEMD/MEMM
    assert disks_listed == volumes  # no other disk volume holds an extent
    return found


async def _free(engine: LoopbackEngine) -> int:
    async with engine.session() as session:
        domain = (await session.execute(select(StorageDomain).where(
            StorageDomain.name == "san1"))).scalar_one()
        return domain.available_bytes


async def _done(engine: LoopbackEngine, job: Job) -> None:
    ended = await engine.job(job.id)
    assert ended.state == "done", ended.error


async def _take(engine: LoopbackEngine, vm_id: uuid.UUID, description: str) -> uuid.UUID:
    snapshot, job = await engine.act(snapshots.add_snapshot, vm_id, description)
    await _done(engine, job)
    return snapshot.id


async def test_snapshots_of_a_down_vm_on_iscsi_are_taken_previewed_restored_and_merged(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    vm_id, disk_ids, lun = await _iscsi_vm(engine, monkeypatch, tmp_path, lun_size=128 * MIB)
    [[boot], [data]] = await _chains(engine, lun, disk_ids)
    free = await _free(engine)
    await asyncio.to_thread(lun.write, boot, "cow", "write -P 0x11 0 64k")
    await asyncio.to_thread(lun.write, data, "raw", "write -P 0x11 0 64k")

    first = await _take(engine, vm_id, "first")
    chains = await _chains(engine, lun, disk_ids)
    assert [c[0] for c in chains] == [boot, data] and all(len(c) == 2 for c in chains)
    assert await _free(engine) == free - 2 * 13 * MIB  # two qcow2 extents of 8 MiB disks
    for chain in chains:
        await asyncio.to_thread(lun.write, chain[-1], "cow", "write -P 0x22 64k 64k")
    second = await _take(engine, vm_id, "second")
    chains = await _chains(engine, lun, disk_ids)
    for chain in chains:
        assert len(chain) == 3
        await asyncio.to_thread(lun.write, chain[-1], "cow", "write -P 0x33 128k 64k")
    # libvirt is given the whole chain, nearest first, each volume a slice of the LUN.
    async with engine.session() as session:
        spec = await build_vm_spec(session, await engine.vm(vm_id), vnc_password="secret")
    layers = [layer.source for layer in spec.disks[0].chain]
    assert [s.offset for s in layers if isinstance(s, IscsiSource)] == [
        extent_of(p)[0] for p in reversed(chains[0][:-1])]  # type: ignore[index]

    # Preview the first snapshot, then undo: the chain and its data come back.
    before = await _chains(engine, lun, disk_ids)
    await _done(engine, await engine.act(snapshots.preview_snapshot, vm_id, first))
    previewing = await _chains(engine, lun, disk_ids)
    assert all(len(c) == 2 for c in previewing) and previewing[0][0] == boot
    assert await asyncio.to_thread(lun.reads, previewing[0][-1], "cow", 0x11, 0)
    assert not await asyncio.to_thread(lun.reads, previewing[0][-1], "cow", 0x22, 64 * 1024)
    await _done(engine, await engine.act(snapshots.end_preview, vm_id, commit=False))
    assert await _chains(engine, lun, disk_ids) == before

    # Restore the second snapshot: what was written after it is gone, its extents freed.
    await _done(engine, await engine.act(snapshots.restore_snapshot, vm_id, second))
    restored = await _chains(engine, lun, disk_ids)
    assert all(len(c) == 3 for c in restored)
    assert await asyncio.to_thread(lun.reads, restored[0][-1], "cow", 0x22, 64 * 1024)
    assert not await asyncio.to_thread(lun.reads, restored[0][-1], "cow", 0x33, 128 * 1024)
    assert await _free(engine) == free - 4 * 13 * MIB
    await asyncio.to_thread(lun.write, restored[1][-1], "cow", "write -P 0x44 128k 64k")

    # Removing both snapshots merges every volume into the base and frees their extents.
    await _done(engine, await engine.act(snapshots.remove_snapshot, vm_id, first))
    assert all(len(c) == 2 for c in await _chains(engine, lun, disk_ids))
    await _done(engine, await engine.act(snapshots.remove_snapshot, vm_id, second))
    assert await _chains(engine, lun, disk_ids) == [[boot], [data]]
    for path, fmt in ((boot, "cow"), (data, "raw")):
        assert await asyncio.to_thread(lun.reads, path, fmt, 0x11, 0)
        assert await asyncio.to_thread(lun.reads, path, fmt, 0x22, 64 * 1024)
    assert await asyncio.to_thread(lun.reads, data, "raw", 0x44, 128 * 1024)
    await asyncio.to_thread(subprocess.run, ["qemu-img", "check", "--image-opts",
                                             lun.opts(boot, "cow")], check=True,
                            capture_output=True)
    assert await _free(engine) == free
    async with engine.session() as session:
        assert (await session.execute(select(func.count()).select_from(Snapshot))).scalar() == 0
        assert (await session.execute(select(func.count()).select_from(ExtentReservation))
                ).scalar() == 0


async def test_iscsi_snapshot_extents_are_allocated_refused_when_full_and_given_back(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # 3 MiB of metadata and leases, a 13 MiB qcow2 and an 8 MiB raw disk, room for one
    # snapshot.
    vm_id, disk_ids, lun = await _iscsi_vm(engine, monkeypatch, tmp_path, lun_size=50 * MIB)
    await _take(engine, vm_id, "fits")
    chains = await _chains(engine, lun, disk_ids)
    extents = sorted(extent_of(p) for c in chains for p in c)  # type: ignore[type-var]
    assert all(a[0] + a[1] <= b[0] for a, b in itertools.pairwise(extents))
    assert extents[0][0] == DOMAIN_AREA  # type: ignore[index]
    assert extents[-1][0] + extents[-1][1] == 50 * MIB  # type: ignore[index]
    assert await _free(engine) == 0

    async def counts() -> tuple[int, int]:
        async with engine.session() as session:
            return ((await session.execute(select(func.count()).select_from(Job))).scalar_one(),
                    (await session.execute(select(func.count()).select_from(Snapshot))
                     ).scalar_one())
    counted = await counts()
    with pytest.raises(Conflict, match="no free extent"):
        await engine.act(snapshots.add_snapshot, vm_id, "too many")
    async with engine.session() as session:
        vm = await session.get(Vm, vm_id)
        assert vm is not None
        vm.status = VmStatus.UP.value
    with pytest.raises(Conflict, match="no free extent"):  # running, as much as down
        await engine.act(snapshots.add_snapshot, vm_id, "live")
    async with engine.session() as session:
        vm = await session.get(Vm, vm_id)
        assert vm is not None
        vm.status = VmStatus.DOWN.value
    assert await counts() == counted and await _free(engine) == 0
    assert await _chains(engine, lun, disk_ids) == chains

    # Merged away, the snapshot's extents are free; a snapshot whose volume the node cannot
    # make is forgotten and gives its reserved extents back.
    async with engine.session() as session:
        snapshot_id = (await session.execute(select(Snapshot.id).where(
            Snapshot.vm_id == vm_id, Snapshot.description == "fits"))).scalar_one()
    await _done(engine, await engine.act(snapshots.remove_snapshot, vm_id, snapshot_id))
    merged = await _chains(engine, lun, disk_ids)
    free = await _free(engine)
    assert free == 26 * MIB

    real_format = iscsi_domain._format

    async def refusing(command: Any) -> Any:
        if command.backing is not None:
            raise NodeFailure(ErrorCode.BAD_REQUEST, "the target refused the write")
        return await real_format(command)
    monkeypatch.setattr(iscsi_domain, "_format", refusing)
    snapshot, job = await engine.act(snapshots.add_snapshot, vm_id, "refused")
    ended = await engine.job(job.id)
    assert ended.state == "failed" and "refused the write" in (ended.error or "")
    assert await _free(engine) == free
    assert await _chains(engine, lun, disk_ids) == merged
    async with engine.session() as session:
        assert await session.get(Snapshot, snapshot.id) is None
        assert (await session.execute(select(func.count()).select_from(ExtentReservation))
                ).scalar() == 0

    # The VM removed with its disks and a snapshot: every extent is free, none listed.
    monkeypatch.setattr(iscsi_domain, "_format", real_format)
    await _take(engine, vm_id, "goes with the vm")
    assert await _free(engine) == 0
    removal = await engine.act(vms.remove_vm, vm_id)
    assert (await engine.job(removal.id)).state == "done"
    assert await _free(engine) == 50 * MIB - DOMAIN_AREA
    assert not [key for key in lun.metadata() if key.startswith("VOL_")]


async def _running(engine: LoopbackEngine, vm_id: uuid.UUID) -> SimulatedHypervisor:
    """The VM started on its host; that host's hypervisor (its QEMU's live chains)."""
    start = await engine.act(vms.start_vm, vm_id)
    assert (await engine.job(start.id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    hyp = engine.hosts["h1"].hypervisor
    assert isinstance(hyp, SimulatedHypervisor)
    return hyp


def _live(hyp: SimulatedHypervisor, vm_id: uuid.UUID) -> list[list[tuple[int, int]]]:
    """Each disk's chain as the running VM's QEMU has it, active first: (offset, size)
    of each slice of the LUN."""
    found = []
    for chain in hyp._vms[vm_id].chains:
        parsed = [parse_extent_location(name) for name in chain]
        assert all(p is not None and p[:2] == (TARGET, 1) for p in parsed), chain
        found.append([(p[2], p[3]) for p in parsed if p is not None])
    return found


def _extents(chains: list[list[str]]) -> list[list[tuple[int, int]]]:
    """The database's chains (base first) as QEMU's (active first)."""
    return [[extent_of(p) for p in reversed(c)] for c in chains]  # type: ignore[misc]


async def test_a_running_vms_snapshots_on_iscsi_are_taken_and_merged_live(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each live snapshot's volume is an extent the engine allocated and formatted over
    the active one, which the VM's QEMU then writes (a slice of the LUN); removing the
    snapshots merges them live (an inner block commit, then an active one with its
    pivot): data kept, extents freed, the metadata area listing the database's chains."""
    vm_id, disk_ids, lun = await _iscsi_vm(engine, monkeypatch, tmp_path, lun_size=128 * MIB)
    [[boot], [data]] = await _chains(engine, lun, disk_ids)
    free = await _free(engine)
    await asyncio.to_thread(lun.write, boot, "cow", "write -P 0x11 0 64k")
    await asyncio.to_thread(lun.write, data, "raw", "write -P 0x11 0 64k")
    hyp = await _running(engine, vm_id)
    assert _live(hyp, vm_id) == _extents([[boot], [data]])

    first = await _take(engine, vm_id, "first")
    chains = await _chains(engine, lun, disk_ids)
    assert [c[0] for c in chains] == [boot, data] and all(len(c) == 2 for c in chains)
    assert _live(hyp, vm_id) == _extents(chains)  # QEMU writes the new extents
    assert await _free(engine) == free - 2 * 13 * MIB
    for chain in chains:
        await asyncio.to_thread(lun.write, chain[-1], "cow", "write -P 0x22 64k 64k")
    second = await _take(engine, vm_id, "second")
    chains = await _chains(engine, lun, disk_ids)
    assert all(len(c) == 3 for c in chains) and _live(hyp, vm_id) == _extents(chains)
    for chain in chains:
        await asyncio.to_thread(lun.write, chain[-1], "cow", "write -P 0x33 128k 64k")
    with pytest.raises(Conflict, match="shut it down first"):  # oVirt restores a down VM
        await engine.act(snapshots.restore_snapshot, vm_id, first)

    # The first snapshot's extent absorbs the one over it (QEMU reads it, does not write
    # it): the active volume's header and the metadata area name the base as its parent.
    await _done(engine, await engine.act(snapshots.remove_snapshot, vm_id, first))
    merged = await _chains(engine, lun, disk_ids)
    assert [c[0] for c in merged] == [boot, data] and all(len(c) == 2 for c in merged)
    assert [c[-1] for c in merged] == [c[-1] for c in chains]
    assert _live(hyp, vm_id) == _extents(merged)
    assert await _free(engine) == free - 2 * 13 * MIB
    # The second's absorbs the active volume (an active commit, then the pivot).
    await _done(engine, await engine.act(snapshots.remove_snapshot, vm_id, second))
    assert await _chains(engine, lun, disk_ids) == [[boot], [data]]
    assert _live(hyp, vm_id) == _extents([[boot], [data]])
    for path, fmt in ((boot, "cow"), (data, "raw")):
        for pattern, offset in ((0x11, 0), (0x22, 64 * 1024), (0x33, 128 * 1024)):
            assert await asyncio.to_thread(lun.reads, path, fmt, pattern, offset)
    await asyncio.to_thread(subprocess.run, ["qemu-img", "check", "--image-opts",
                                             lun.opts(boot, "cow")], check=True,
                            capture_output=True)
    assert await _free(engine) == free
    assert (await engine.vm(vm_id)).status == VmStatus.UP
    async with engine.session() as session:
        assert (await session.execute(select(func.count()).select_from(Snapshot))).scalar() == 0
        assert (await session.execute(select(func.count()).select_from(ExtentReservation))
                ).scalar() == 0


async def test_a_live_iscsi_snapshot_the_host_refuses_gives_its_extents_back(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    vm_id, disk_ids, lun = await _iscsi_vm(engine, monkeypatch, tmp_path, lun_size=128 * MIB)
    hyp = await _running(engine, vm_id)
    before, free = await _chains(engine, lun, disk_ids), await _free(engine)

    async def refuses(vm: uuid.UUID, disks: object) -> None:
        raise NodeFailure(ErrorCode.HYPERVISOR_ERROR, "QEMU could not open the new volume")
    monkeypatch.setattr(hyp, "disk_snapshot", refuses)
    snapshot, job = await engine.act(snapshots.add_snapshot, vm_id, "refused")
    ended = await engine.job(job.id)
    assert ended.state == "failed" and "could not open" in (ended.error or "")
    assert await _chains(engine, lun, disk_ids) == before
    assert await _free(engine) == free and _live(hyp, vm_id) == _extents(before)
    async with engine.session() as session:
        assert await session.get(Snapshot, snapshot.id) is None
        assert (await session.execute(select(Lock))).all() == []
        assert (await session.execute(select(func.count()).select_from(ExtentReservation))
                ).scalar() == 0


async def test_an_engine_that_dies_after_qemu_took_a_live_snapshot_leaves_it_to_a_successor(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """QEMU switched to the new extents and wrote into them when the engine dies, before
    the disks' chains were recorded: the successor, even on a host with no answer cached,
    never formats an extent again (the guest's writes are kept), finds the snapshot taken
    and records the chains."""
    vm_id, disk_ids, lun = await _iscsi_vm(engine, monkeypatch, tmp_path, lun_size=128 * MIB)
    hyp = await _running(engine, vm_id)
    [[boot], [data]] = await _chains(engine, lun, disk_ids)
    formats: list[int] = []
    real_format, real_live = iscsi_domain._format, snapshot_handlers._snapshot_live
    taken = asyncio.Event()

    async def counted(command: Any) -> Any:
        formats.append(command.offset)
        return await real_format(command)
    monkeypatch.setattr(iscsi_domain, "_format", counted)

    async def dies_after(*args: Any) -> None:
        await real_live(*args)
        if not taken.is_set():
            taken.set()
            await asyncio.Event().wait()  # the engine is gone before it records anything
    monkeypatch.setattr(snapshot_handlers, "_snapshot_live", dies_after)
    snapshot, job = await engine.act(snapshots.add_snapshot, vm_id, "interrupted")
    await asyncio.wait_for(taken.wait(), 60)
    await engine.worker.stop()
    tops = [c[0] for c in hyp._vms[vm_id].chains]
    for top in tops:  # the guest writes its new volumes
        where = parse_extent_location(top)
        assert where is not None
        opts = lun.window(LUN, where[2], where[3], DiskFormat.QCOW2)
        await asyncio.to_thread(subprocess.run, ["qemu-io", "--image-opts", "-c",
                                                 "write -P 0x66 0 64k", opts],
                                check=True, capture_output=True)
    async with engine.session() as session:
        row = await session.get(Job, job.id)
        assert row is not None and row.state == "running"
        assert len(row.result["made_volumes"]) == 2 and len(formats) == 2
        row.lease_until = row.start_time
    store = engine.hosts["h1"].agent.idempotency
    store._db.execute("DELETE FROM results")  # as another host would: nothing cached

    ended = await engine.successor_ends(job.id)
    assert ended.state == "done", ended.error
    assert len(formats) == 2  # no extent formatted again
    chains = await _chains(engine, lun, disk_ids)
    assert [c[0] for c in chains] == [boot, data] and _live(hyp, vm_id) == _extents(chains)
    for chain in chains:
        assert await asyncio.to_thread(lun.reads, chain[-1], "cow", 0x66, 0)
    async with engine.session() as session:
        row = await session.get(Snapshot, snapshot.id)
        assert row is not None and row.status == "ok"
        assert (await session.execute(select(Lock))).all() == []
        assert (await session.execute(select(func.count()).select_from(ExtentReservation))
                ).scalar() == 0


async def test_a_snapshot_job_opens_the_chap_password_with_its_services_box(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The password sealed with the engine's box reaches the node in the job's commands,
    opened with the box the job's services carry (no process-wide box)."""
    vm_id, _disk_ids, _lun = await _iscsi_vm(engine, monkeypatch, tmp_path, lun_size=128 * MIB)
    box = engine.worker.services.secret_box()
    async with engine.session() as session:
        domain = (await session.execute(select(StorageDomain))).scalars().all()[-1]
        domain.chap_username = "init1"
        domain.chap_password_sealed = box.seal(Secret("chap-secret"))
    real, sent = iscsi_domain.execute, []

    async def seen(command: Any) -> Any:  # the LUN is a file here: no login to make
        sent.append((command.name, command.lun.chap))
        return await real(command.model_copy(update={"lun": LUN}))
    monkeypatch.setattr(iscsi_domain, "execute", seen)
    await _take(engine, vm_id, "with chap")
    assert {name for name, _chap in sent} == {"storage.extent_format",
                                              "storage.lun_metadata_write"}
    assert all(chap is not None and (chap.username, chap.password) == ("init1", "chap-secret")
               for _name, chap in sent)
