"""A live migration hands the VM's lease over: the source's keeper offers it under a
token, the destination's keeper takes it at once (no lease-timeout wait), the source
stops renewing; a failed migration withdraws the offer and the lease stays put."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import pytest

from overt.node.errors import NodeFailure
from overt.node.leases import delta
from overt.node.leases.area import FileArea
from overt.node.leases.client import LeaseClient
from overt.node.leases.keeper import LeaseRefused
from overt.node.leases.record import LeaseRecord, unpack
from overt.node.leases.service import KeeperServer
from overt.protocol import ErrorCode
from overt.protocol.commands import Empty, VmLeaseTakeOver
from overt.protocol.envelope import CommandEnvelope
from tests.unit.node.leases.test_agent_leases import _agent
from tests.unit.node.leases.test_keeper import Node, _poll, node, spec, storage

__all__ = ["storage"]  # the fixture, used by name


async def _running(*nodes: Node) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(n.keeper.run()) for n in nodes]


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _on_disk(storage: Path) -> LeaseRecord | None:
    area = FileArea(storage / "xleases", direct=False)
    try:
        return unpack(area.read(spec().slot))
    finally:
        area.close()


async def test_the_destination_takes_the_offered_lease_at_once_and_the_source_lets_go(
        storage: Path) -> None:
    vm, token = uuid.uuid4(), uuid.uuid4()
    a, b = node(storage, "a"), node(storage, "b")
    await a.keeper.acquire(vm, spec())
    tasks = await _running(a, b)
    try:
        await a.keeper.offer(vm, token)
        offered = _on_disk(storage)
        assert offered is not None and offered.owner == a.keeper.host_id
        assert offered.handover == token
        loop = asyncio.get_running_loop()
        began = loop.time()
        await b.keeper.take_over(vm, spec(), token)
        # no lease timeout (8T) watched: the source consented
        assert loop.time() - began < delta.LeaseTimings(spec().io_timeout_s).lease_timeout
        held = _on_disk(storage)
        assert held is not None and held.owner == b.keeper.host_id and held.handover is None
        assert held.generation == offered.generation + 1
        await _poll(lambda: str(vm) not in a.keeper.status()["vms"])
        assert list(b.keeper.status()["vms"]) == [str(vm)]
        assert a.stopped == [] and a.keeper.kills() == []  # handed over, not lost
        renewed = b.keeper.domains[spec().domain_id].vms[vm].renewed_at
        await _poll(lambda: b.keeper.domains[spec().domain_id].vms[vm].renewed_at > renewed)
        assert b.stopped == []
        with pytest.raises(LeaseRefused, match="held by host"):
            await a.keeper.acquire(vm, spec())  # back on the source only by migrating again
    finally:
        await _stop(tasks)


async def test_a_failed_migration_withdraws_the_offer_and_the_lease_stays_with_the_source(
        storage: Path) -> None:
    vm, token = uuid.uuid4(), uuid.uuid4()
    a, b = node(storage, "a"), node(storage, "b")
    await a.keeper.acquire(vm, spec())
    tasks = await _running(a)
    try:
        await a.keeper.offer(vm, token)
        await a.keeper.offer(vm, None)
        with pytest.raises(LeaseRefused, match="did not offer it"):
            await b.keeper.take_over(vm, spec(), token)
        record = _on_disk(storage)
        assert record is not None and record.owner == a.keeper.host_id
        assert record.handover is None
        assert list(a.keeper.status()["vms"]) == [str(vm)]
        assert b.keeper.status()["vms"] == {}
        with pytest.raises(LeaseRefused, match="held by host"):
            await b.keeper.acquire(vm, spec())  # still renewed by the source
    finally:
        await _stop(tasks)


async def test_only_the_offered_token_takes_a_lease_over(storage: Path) -> None:
    vm, token = uuid.uuid4(), uuid.uuid4()
    a, c = node(storage, "a"), node(storage, "c")
    await a.keeper.acquire(vm, spec())
    with pytest.raises(LeaseRefused, match="did not offer it"):
        await c.keeper.take_over(vm, spec(), token)  # nothing offered
    await a.keeper.offer(vm, token)
    with pytest.raises(LeaseRefused, match="did not offer it"):
        await c.keeper.take_over(vm, spec(), uuid.uuid4())
    with pytest.raises(LeaseRefused, match="holds no lease"):
        await c.keeper.offer(vm, token)  # only the holder offers
    record = _on_disk(storage)
    assert record is not None and record.owner == a.keeper.host_id


async def test_a_copy_still_running_on_the_source_after_the_take_over_is_stopped(
        storage: Path) -> None:
    vm, token = uuid.uuid4(), uuid.uuid4()
    a, b = node(storage, "a"), node(storage, "b")

    async def still_runs(_: uuid.UUID) -> bool:
        return True
    a.keeper._vm_running = still_runs
    await a.keeper.acquire(vm, spec())
    tasks = await _running(a)
    try:
        await a.keeper.offer(vm, token)
        await b.keeper.take_over(vm, spec(), token)
        await _poll(lambda: a.stopped == [vm])
    finally:
        await _stop(tasks)
    assert "still ran here" in a.keeper.kills()[0]["reason"]


async def test_the_agents_offer_for_a_migration_and_take_over_on_the_destination(
        tmp_path: Path, storage: Path) -> None:
    vm, token = uuid.uuid4(), uuid.uuid4()
    nodes = {name: node(storage, name) for name in ("one", "two")}
    servers = [KeeperServer(n.keeper, tmp_path / f"{name}.sock") for name, n in nodes.items()]
    for server in servers:
        await server.start()
    tasks = await _running(*nodes.values())
    one = _agent(tmp_path, "one", LeaseClient(tmp_path / "one.sock"))
    two = _agent(tmp_path, "two", LeaseClient(tmp_path / "two.sock"))
    try:
        await nodes["one"].keeper.acquire(vm, spec())

        async def fails() -> None:
            raise NodeFailure(ErrorCode.INVALID_STATE, "the destination refused the VM")
        with pytest.raises(NodeFailure, match="the destination refused"):
            await one._migrate_leased(vm, token, fails)
        record = _on_disk(storage)
        assert record is not None and record.handover is None  # the offer is withdrawn

        async def succeeds() -> str:
            return "migrated"
        assert await one._migrate_leased(vm, token, succeeds) == "migrated"
        command = VmLeaseTakeOver(vm_id=vm, lease=spec(), token=token)
        assert await two._execute(CommandEnvelope(command=command)) == Empty()
        await _poll(lambda: str(vm) not in nodes["one"].keeper.status()["vms"])
        assert list(nodes["two"].keeper.status()["vms"]) == [str(vm)]
        with pytest.raises(NodeFailure) as refused:
            await one._migrate_leased(vm, token, succeeds)  # the lease is not here any more
        assert "cannot migrate" in refused.value.message
        assert "holds no lease" in refused.value.message
    finally:
        await _stop(tasks)
        for server in servers:
            await server.stop()
