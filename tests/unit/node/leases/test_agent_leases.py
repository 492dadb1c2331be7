"""The agent starts a leased VM only once its node's keeper holds the lease; a lease
another node's keeper renews makes the start fail with the reason, and nothing starts."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import pytest

from overt.node.agent import Agent
from overt.node.errors import NodeFailure
from overt.node.idempotency import IdempotencyStore
from overt.node.leases.client import LeaseClient
from overt.node.leases.service import KeeperServer
from overt.node.simulated.hypervisor import SimulatedHypervisor
from overt.node.storage.local import LocalVolumes
from overt.protocol.vm import LeaseSpec, VmSpec
from tests.unit.node.leases.test_keeper import IO_TIMEOUT, Node


def _agent(tmp_path: Path, name: str, leases: LeaseClient | None) -> Agent:
    return Agent(hypervisor=SimulatedHypervisor(uuid.uuid4(), hostname=name),
                 volumes=LocalVolumes(tmp_path / name / "images"),
                 idempotency=IdempotencyStore(tmp_path / f"{name}.sqlite"),
                 transport=None,  # type: ignore[arg-type]  # never used here
                 leases=leases)


async def test_a_second_start_is_refused_while_another_node_renews_the_lease(
        tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    storage.mkdir()
    for area in ("ids", "xleases"):
        (storage / area).write_bytes(bytes(512 * 256))
    lease = LeaseSpec(domain_id=uuid.uuid4(), server="storage", export="/export", slot=0,
                      io_timeout_s=IO_TIMEOUT)
    spec = VmSpec(id=uuid.uuid4(), name="leased", memory_mib=64, lease=lease)
    nodes, servers, tasks = [], [], []
    for name in ("one", "two"):
        node = Node(storage, tmp_path / name)
        server = KeeperServer(node.keeper, tmp_path / f"{name}.sock")
        await server.start()
        nodes.append(node)
        servers.append(server)
        tasks.append(asyncio.create_task(node.keeper.run()))
    started: list[str] = []

    async def start(where: str) -> str:
        started.append(where)
        return where
    try:
        one = _agent(tmp_path, "one", LeaseClient(tmp_path / "one.sock"))
        two = _agent(tmp_path, "two", LeaseClient(tmp_path / "two.sock"))
        assert await one._start_leased(spec.id, spec, lambda: start("one")) == "one"
        with pytest.raises(NodeFailure) as refused:
            await two._start_leased(spec.id, spec, lambda: start("two"))
        assert "held by host" in refused.value.message
        assert str(nodes[0].keeper.host_id) in refused.value.message
        assert started == ["one"]
        without = _agent(tmp_path, "three", None)
        with pytest.raises(NodeFailure, match="runs no lease keeper"):
            await without._start_leased(spec.id, spec, lambda: start("three"))
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for server in servers:
            await server.stop()
