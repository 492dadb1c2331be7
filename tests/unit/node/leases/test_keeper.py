"""The keeper on local files with a short I/O timeout: refusal, the kill, takeover."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from overt.node.leases.area import FileArea, LeaseArea
from overt.node.leases.export import DomainRef
from overt.node.leases.keeper import DomainAreas, Keeper, LeaseRefused
from overt.node.leases.record import SECTOR
from overt.protocol.vm import LeaseSpec

IO_TIMEOUT = 0.3  # lease timeout 2.4 s, kill after 1.8 s: slack for a loaded machine (4 lane
# workers on 2 cores stall an event loop for a second now and then)


class CuttableArea(FileArea):
    cut = False

    def read(self, slot: int) -> bytes:
        if self.cut:
            raise OSError("storage unreachable")
        return super().read(slot)

    def write(self, slot: int, sector: bytes) -> None:
        if self.cut:
            raise OSError("storage unreachable")
        super().write(slot, sector)


class Node:
    def __init__(self, storage: Path, state: Path) -> None:
        state.mkdir()
        self.storage = storage
        self.stopped: list[uuid.UUID] = []
        self.server_died = False
        self.restarts = 0
        self.areas: list[CuttableArea] = []
        self.keeper = Keeper(uuid.uuid4(), state, self.open_domain, self.stop_vm)
        self.task: asyncio.Task[None] | None = None

    async def open_domain(self, ref: DomainRef) -> DomainAreas:
        ids, xleases = self._open_areas()

        async def close() -> None:
            ids.close()
            xleases.close()

        async def restart() -> tuple[LeaseArea, LeaseArea]:
            self.restarts += 1
            return self._open_areas()
        return DomainAreas(ids, xleases, close, alive=lambda: not self.server_died,
                           restart=restart)

    def _open_areas(self) -> tuple[CuttableArea, CuttableArea]:
        ids, xleases = (CuttableArea(self.storage / n, direct=False) for n in ("ids", "xleases"))
        self.areas += [ids, xleases]
        return ids, xleases

    async def stop_vm(self, vm_id: uuid.UUID) -> None:
        self.stopped.append(vm_id)

    def cut(self) -> None:
        for area in self.areas:
            area.cut = True


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    for name in ("ids", "xleases"):
        (tmp_path / name).write_bytes(bytes(SECTOR * 256))
    return tmp_path


def spec(io_timeout: float = IO_TIMEOUT) -> LeaseSpec:
    return LeaseSpec(domain_id=uuid.UUID(int=7), server="storage", export="/export", slot=5,
                     io_timeout_s=io_timeout)


def node(storage: Path, name: str) -> Node:
    return Node(storage, storage / name)


async def _poll(condition: Callable[[], bool], deadline_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not condition():
        assert loop.time() < end, "condition not met before the deadline"
        await asyncio.sleep(0.01)


async def test_a_live_lease_refuses_a_second_host_and_expires_after_its_keeper_stops(
        storage: Path) -> None:
    vm = uuid.uuid4()
    a, b = node(storage, "a"), node(storage, "b")
    await a.keeper.acquire(vm, spec())
    a.task = asyncio.create_task(a.keeper.run())
    try:
        with pytest.raises(LeaseRefused) as refused:
            await b.keeper.acquire(vm, spec())
        assert refused.value.owner == a.keeper.host_id
        assert "held by host" in str(refused.value)
    finally:
        a.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await a.task
    await b.keeper.acquire(vm, spec())  # a renews no more: b waits it out and takes it
    assert str(vm) in b.keeper.status()["vms"]
    assert a.keeper.status()["domains"][str(spec().domain_id)]["host_slot"] != \
        b.keeper.status()["domains"][str(spec().domain_id)]["host_slot"]


async def test_a_vm_whose_lease_cannot_be_renewed_is_stopped_and_the_reason_kept(
        storage: Path) -> None:
    vm = uuid.uuid4()
    a = node(storage, "a")
    await a.keeper.acquire(vm, spec())
    task = asyncio.create_task(a.keeper.run())
    try:
        a.cut()
        await _poll(lambda: a.stopped == [vm])
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    kills = a.keeper.kills()
    assert [k["vm_id"] for k in kills] == [str(vm)]
    assert "could not be renewed" in kills[0]["reason"] or "host id lease" in kills[0]["reason"]
    assert a.keeper.status()["vms"] == {}


async def test_a_restarted_keeper_adopts_its_leases(storage: Path) -> None:
    vm = uuid.uuid4()
    a = node(storage, "a")
    await a.keeper.acquire(vm, spec())
    again = Keeper(a.keeper.host_id, storage / "a", a.open_domain, a.stop_vm)
    await again.adopt()
    assert list(again.status()["vms"]) == [str(vm)]
    assert a.stopped == []


async def test_lease_areas_whose_server_died_are_served_again_and_the_vm_keeps_running(
        storage: Path) -> None:
    vm = uuid.uuid4()
    a = node(storage, "a")
    await a.keeper.acquire(vm, spec(0.5))  # kill after 3 s: time for a restart
    task = asyncio.create_task(a.keeper.run())
    try:
        a.server_died = True
        a.cut()  # the old areas fail as a dead FUSE mount does
        await _poll(lambda: a.restarts == 1)
        a.server_died = False
        restarted = a.keeper.clock.now()
        held = a.keeper.domains[spec().domain_id].vms[vm]
        await _poll(lambda: held.renewed_at > restarted)  # renewed on the new areas
        assert a.stopped == []
        assert str(vm) in a.keeper.status()["vms"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
