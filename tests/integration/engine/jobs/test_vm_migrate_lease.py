"""A leased VM's migration moves its lease: the destination's keeper holds it once the
VM runs there and the source's keeper lets it go; a failed migration leaves it with the
source. Simulated nodes, each with a real keeper on one local lease file."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from overt.engine.db.tables import AuditEvent, Step, StorageDomain, Vm
from overt.engine.model.status import StorageDomainStatus, VmStatus
from overt.engine.queries.lookup import Ref
from overt.engine.services import vms
from overt.node.leases.area import FileArea
from overt.node.leases.client import LeaseClient
from overt.node.leases.record import SECTOR, LeaseRecord, unpack
from overt.node.leases.service import KeeperServer
from tests.support.loopback import LoopbackEngine
from tests.unit.node.leases.test_keeper import IO_TIMEOUT, Node

SLOT = 4


@pytest.fixture
async def keepers(engine: LoopbackEngine, tmp_path: Path) -> AsyncIterator[dict[str, Node]]:
    """Hosts h1 and h2, each agent with its own keeper on the same lease areas."""
    storage = tmp_path / "storage"
    storage.mkdir()
    for area in ("ids", "xleases"):
        (storage / area).write_bytes(bytes(SECTOR * 256))
    engine.settings.lease_io_timeout_s = IO_TIMEOUT
    nodes: dict[str, Node] = {}
    servers, tasks = [], []
    for name in ("h1", "h2"):
        simulated = await engine.add_host(name)
        nodes[name] = keeper = Node(storage, tmp_path / name)
        server = KeeperServer(keeper.keeper, tmp_path / f"{name}.sock")
        await server.start()
        servers.append(server)
        tasks.append(asyncio.create_task(keeper.keeper.run()))
        simulated.agent.leases = LeaseClient(tmp_path / f"{name}.sock")
    yield nodes
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for server in servers:
        await server.stop()


async def _leased_vm(engine: LoopbackEngine) -> uuid.UUID:
    vm_id = await engine.add_vm("leased")
    async with engine.session() as session:
        domain = StorageDomain(name="nfs-leases", storage_type="nfs", path="/exports/data",
                               address="nfs.example", status=StorageDomainStatus.ACTIVE)
        session.add(domain)
        await session.flush()
        vm = await session.get(Vm, vm_id)
        assert vm is not None
        vm.lease_storage_domain_id, vm.lease_slot = domain.id, SLOT
    job = await engine.act(vms.start_vm, vm_id)
    assert (await engine.job(job.id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    return vm_id


def _holder(nodes: dict[str, Node]) -> LeaseRecord | None:
    area = FileArea(next(iter(nodes.values())).storage / "xleases", direct=False)
    try:
        return unpack(area.read(SLOT))
    finally:
        area.close()


async def _placed(engine: LoopbackEngine, vm_id: uuid.UUID) -> tuple[str, str]:
    vm = await engine.vm(vm_id)
    source = next(n for n, h in engine.hosts.items() if h.host_id == vm.host_id)
    return source, "h2" if source == "h1" else "h1"


async def _until(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    while not condition():
        assert loop.time() < end, f"{what} did not happen"
        await asyncio.sleep(0.02)


async def test_the_lease_moves_with_the_migrated_vm(
        engine: LoopbackEngine, keepers: dict[str, Node]) -> None:
    vm_id = await _leased_vm(engine)
    source, target = await _placed(engine, vm_id)
    held = _holder(keepers)
    assert held is not None and held.owner == keepers[source].keeper.host_id

    job = await engine.act(vms.migrate_vm, vm_id, host=Ref(name=target))
    assert (await engine.job(job.id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    assert (await _placed(engine, vm_id))[0] == target
    held = _holder(keepers)
    assert held is not None and held.owner == keepers[target].keeper.host_id
    assert held.handover is None
    assert list(keepers[target].keeper.status()["vms"]) == [str(vm_id)]
    await _until(lambda: keepers[source].keeper.status()["vms"] == {},
                 "the source letting the lease go")
    assert keepers[source].stopped == [] and keepers[target].stopped == []
    async with engine.session() as session:
        steps = [s.description for s in (await session.execute(
            select(Step).where(Step.job_id == job.id))).scalars()]
    assert f"Moving the lease of VM leased to host {target}" in steps


async def test_a_failed_migration_leaves_the_lease_with_the_source(
        engine: LoopbackEngine, keepers: dict[str, Node]) -> None:
    vm_id = await _leased_vm(engine)
    source, target = await _placed(engine, vm_id)
    engine.hosts[target].hypervisor.refuse_incoming = "the destination refused the VM"

    job = await engine.act(vms.migrate_vm, vm_id, host=Ref(name=target))
    assert (await engine.job(job.id)).state == "failed"
    await engine.settled()
    vm = await engine.vm(vm_id)
    assert vm.status == VmStatus.UP and (await _placed(engine, vm_id))[0] == source
    held = _holder(keepers)
    assert held is not None and held.owner == keepers[source].keeper.host_id
    assert held.handover is None  # the offer was withdrawn
    assert list(keepers[source].keeper.status()["vms"]) == [str(vm_id)]
    assert keepers[target].keeper.status()["vms"] == {}
    async with engine.session() as session:
        said = [e.description for e in (await session.execute(
            select(AuditEvent).where(AuditEvent.vm_id == vm_id))).scalars()]
    assert not any("lease could not move" in s for s in said)


async def test_a_lease_the_destination_cannot_take_stays_with_the_source_and_says_so(
        engine: LoopbackEngine, keepers: dict[str, Node], tmp_path: Path) -> None:
    vm_id = await _leased_vm(engine)
    source, target = await _placed(engine, vm_id)
    engine.hosts[target].agent.leases = LeaseClient(tmp_path / "nowhere.sock")  # keeper down

    job = await engine.act(vms.migrate_vm, vm_id, host=Ref(name=target))
    assert (await engine.job(job.id)).state == "done"  # the VM runs on the destination
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    held = _holder(keepers)
    assert held is not None and held.owner == keepers[source].keeper.host_id  # still renewed
    async with engine.session() as session:
        said = [e.description for e in (await session.execute(
            select(AuditEvent).where(AuditEvent.vm_id == vm_id))).scalars()]
    assert any(s.startswith(f"VM leased migrated to host {target}, but its lease could not "
                            "move there: ") and "lease keeper" in s for s in said)
