"""Heartbeats leave on time while reading the host is slow: a libvirt call held up by a
QEMU waiting on storage must not make the engine judge a live node silent."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from overt.node.agent import Agent, AgentTimings
from overt.node.events import EventSequencer
from overt.node.idempotency import IdempotencyStore
from overt.node.simulated.hypervisor import SimulatedHypervisor
from overt.node.storage.local import LocalVolumes
from overt.protocol.envelope import EventEnvelope
from overt.protocol.events import Heartbeat
from overt.protocol.host import VmStatusReport

INTERVAL_S = 0.05


class _Sent:
    """The agent's end of the bus, keeping what the agent publishes."""

    def __init__(self) -> None:
        self.beats: list[Heartbeat] = []
        self._arrived = asyncio.Event()

    async def publish(self, event: EventEnvelope) -> None:
        assert isinstance(event.event, Heartbeat)
        self.beats.append(event.event)
        self._arrived.set()

    async def until(self, predicate: Callable[[list[Heartbeat]], bool]) -> None:
        async with asyncio.timeout(5):
            while not predicate(self.beats):
                self._arrived.clear()
                await self._arrived.wait()


class _SlowHost(SimulatedHypervisor):
    """A hypervisor whose VM listing waits at `gate` once `slow` is set, or fails."""

    def __init__(self) -> None:
        super().__init__(uuid.uuid4(), hostname="slow", memory_mib=4096)
        self.slow = False
        self.failing = False
        self.gate = asyncio.Event()

    async def list_vms(self) -> list[VmStatusReport]:
        if self.failing:
            raise RuntimeError("libvirt: cannot read the domains")
        if self.slow:
            await self.gate.wait()
        return await super().list_vms()


def _agent(tmp_path: Path, hypervisor: SimulatedHypervisor, sent: _Sent) -> Agent:
    agent = Agent(hypervisor=hypervisor, volumes=LocalVolumes(tmp_path / "images"),
                  idempotency=IdempotencyStore(tmp_path / "idempotency.sqlite"),
                  transport=sent,  # type: ignore[arg-type]  # only publish is used
                  timings=AgentTimings(heartbeat_interval_s=INTERVAL_S))
    agent.sequencer = EventSequencer(uuid.uuid4())
    return agent


async def test_heartbeats_go_on_with_the_last_figures_while_the_host_is_slow_to_read(
        tmp_path: Path) -> None:
    host, sent = _SlowHost(), _Sent()
    await host.connect()
    loop = asyncio.create_task(_agent(tmp_path, host, sent)._send_heartbeats())
    try:
        await sent.until(lambda beats: len(beats) >= 2)
        assert sent.beats[-1].free_memory_mib == 4096
        host.slow = True
        stuck_at = len(sent.beats)
        await sent.until(lambda beats: len(beats) >= stuck_at + 5)
        assert not host.gate.is_set()  # every one of them left while the listing waited
        assert {b.free_memory_mib for b in sent.beats} == {4096}
        host._memory_mib = 2048  # what the next reading finds
        host.slow = False
        host.gate.set()
        await sent.until(lambda beats: beats[-1].free_memory_mib == 2048)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


async def test_no_heartbeat_leaves_while_the_host_cannot_be_read(tmp_path: Path) -> None:
    host, sent = _SlowHost(), _Sent()
    await host.connect()
    host.failing = True
    with pytest.raises(RuntimeError, match="cannot read the domains"):
        await _agent(tmp_path, host, sent)._send_heartbeats()
    assert sent.beats == []
