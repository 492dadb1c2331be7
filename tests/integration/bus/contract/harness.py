"""What the contract suite needs from a transport, and the test doubles around it.

A transport joins the suite with one factory function registered with
`@contract_transport(NAME, marks...)`: an async context manager that, given the
pytest request (to reach fixtures such as a broker), yields a `TransportFactory`
building unstarted engine and agent ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

import pytest

from overt.bus.base import AgentTransport, CommandHandler, EngineTransport, NodeAddress
from overt.protocol import CommandEnvelope, ErrorCode, EventEnvelope, NodeError, Reply
from overt.protocol.commands import HostCapabilitiesCommand, VmStatus
from overt.protocol.events import Heartbeat, StatsSample
from overt.protocol.host import (
    HostCapabilities,
    HostStats,
    VirtMode,
    VmState,
    VmStatusReport,
)


class TransportFactory(Protocol):
    """Builds the two ends of one transport; `TransportPair` starts and closes them."""

    async def engine(self) -> EngineTransport: ...

    async def node(self, host_uuid: uuid.UUID) -> tuple[AgentTransport, NodeAddress]:
        """A node's end (enrolled, not started) and how the engine addresses it."""
        ...


FactoryMaker = Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[TransportFactory]]


@dataclass(frozen=True)
class RegisteredTransport:
    maker: FactoryMaker
    marks: tuple[pytest.MarkDecorator, ...]


TRANSPORTS: dict[str, RegisteredTransport] = {}


def contract_transport(name: str, *marks: pytest.MarkDecorator
                       ) -> Callable[[FactoryMaker], FactoryMaker]:
    """Register a transport for the contract suite (one function per transport)."""
    def register(maker: FactoryMaker) -> FactoryMaker:
        TRANSPORTS[name] = RegisteredTransport(maker, marks)
        return maker
    return register


class RecordingSink:
    """The engine's monitor, reduced to a list: records events, refuses or holds on demand."""

    def __init__(self) -> None:
        self.events: list[EventEnvelope] = []
        self.stats: list[EventEnvelope] = []
        self.refuse: Callable[[EventEnvelope], bool] = lambda _event: False
        self.stats_gate = asyncio.Event()  # stats wait here until it is set
        self.stats_gate.set()
        self._changed = asyncio.Condition()

    async def __call__(self, event: EventEnvelope) -> None:
        if event.seq is None:
            await self.stats_gate.wait()
            await self._record(self.stats, event)
            return
        if self.refuse(event):
            raise RuntimeError(f"refusing event {event.seq} as asked")
        await self._record(self.events, event)

    async def _record(self, into: list[EventEnvelope], event: EventEnvelope) -> None:
        async with self._changed:
            into.append(event)
            self._changed.notify_all()

    def seqs(self, host_uuid: uuid.UUID) -> list[int]:
        """Sequence numbers of the node's events, in the order the sink recorded them."""
        return [e.seq for e in self.events if e.host_uuid == host_uuid and e.seq is not None]

    def stats_of(self, host_uuid: uuid.UUID) -> list[EventEnvelope]:
        return [e for e in self.stats if e.host_uuid == host_uuid]

    async def wait_for_seqs(self, host_uuid: uuid.UUID, count: int, *,
                            within: float = 20) -> list[int]:
        """Wait until events 1..count of the node were all recorded; return what was."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(
                lambda: set(range(1, count + 1)) <= set(self.seqs(host_uuid)))
        return self.seqs(host_uuid)


async def eventually(check: Callable[[], bool], *, within: float = 10,
                     what: str = "the condition") -> None:
    """Poll `check` until it is true; fail the test after `within` seconds."""
    for _ in range(int(within / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {within:g} s")


def first_seen(seqs: list[int]) -> list[int]:
    """The order in which sequence numbers first appeared (redeliveries left out)."""
    return list(dict.fromkeys(seqs))


def node_name(host_uuid: uuid.UUID) -> str:
    return f"node-{str(host_uuid)[:8]}"


def answering_handler(host_uuid: uuid.UUID, *, seen: list[CommandEnvelope] | None = None,
                      jitter: float = 0.0) -> CommandHandler:
    """An agent that answers `vm.status` and `host.capabilities` with real replies naming
    itself (and the VM asked about), after a random delay of up to `jitter` seconds."""
    async def handle(envelope: CommandEnvelope) -> Reply:
        if seen is not None:
            seen.append(envelope)
        if jitter:
            await asyncio.sleep(random.uniform(0, jitter))  # noqa: S311
        command = envelope.command
        if isinstance(command, VmStatus):
            return Reply.success(envelope.request_id, VmStatusReport(
                vm_id=command.vm_id, name=node_name(host_uuid), state=VmState.RUNNING))
        if isinstance(command, HostCapabilitiesCommand):
            return Reply.success(envelope.request_id, capabilities(host_uuid))
        return Reply.failure(envelope.request_id, NodeError(
            code=ErrorCode.BAD_REQUEST, message=f"{command.name} is not served here"))
    return handle


def capabilities(host_uuid: uuid.UUID) -> HostCapabilities:
    return HostCapabilities(
        host_uuid=host_uuid, hostname=node_name(host_uuid), agent_version="test",
        protocol_version=1, cpu_model="test", cpu_sockets=1, cpu_cores=2, cpu_threads=1,
        memory_mib=2048, libvirt_version="9.0.0", qemu_version="7.2.0",
        virt_mode=VirtMode.QEMU, kernel="6.1")


def heartbeat(host_uuid: uuid.UUID, boot_id: uuid.UUID, seq: int) -> EventEnvelope:
    return EventEnvelope(host_uuid=host_uuid, boot_id=boot_id, seq=seq,
                         event=Heartbeat(vm_count=seq, free_memory_mib=1024, uptime_s=seq))


def stats_sample(host_uuid: uuid.UUID, boot_id: uuid.UUID) -> EventEnvelope:
    return EventEnvelope(host_uuid=host_uuid, boot_id=boot_id, event=StatsSample(
        interval_s=1.0, host=HostStats(cpu_percent=1.0, memory_total_mib=2048,
                                       memory_used_mib=1024, memory_free_mib=1024)))


@dataclass
class Node:
    host_uuid: uuid.UUID
    address: NodeAddress
    agent: AgentTransport
    boot_id: uuid.UUID = field(default_factory=uuid.uuid4)
    next_seq: int = 1

    async def send_events(self, count: int) -> None:
        for _ in range(count):
            await self.agent.publish(heartbeat(self.host_uuid, self.boot_id, self.next_seq))
            self.next_seq += 1


class TransportPair:
    """A started engine end with a `RecordingSink`, and the nodes a test asks for."""

    def __init__(self, factory: TransportFactory) -> None:
        self._factory = factory
        self.sink = RecordingSink()
        self._engine: EngineTransport | None = None
        self._stack = contextlib.AsyncExitStack()

    @property
    def engine(self) -> EngineTransport:
        assert self._engine is not None, "start the engine first"
        return self._engine

    async def start_engine(self) -> EngineTransport:
        engine = await self._factory.engine()
        await engine.start(self.sink)
        self._stack.push_async_callback(engine.close)
        self._engine = engine
        return engine

    async def add_node(self, handler: Callable[[uuid.UUID], CommandHandler] = answering_handler,
                       *, serve: bool = True) -> Node:
        """A node serving commands with `handler(its host uuid)`; with `serve=False` it
        exists for the engine but nothing takes its commands."""
        host_uuid = uuid.uuid4()
        agent, address = await self._factory.node(host_uuid)
        if serve:
            await agent.start(handler(host_uuid))
            self._stack.push_async_callback(agent.close)
        return Node(host_uuid, address, agent)

    async def aclose(self) -> None:
        await self._stack.aclose()


@contextlib.asynccontextmanager
async def transport_pair_for(name: str, request: pytest.FixtureRequest
                             ) -> AsyncIterator[TransportPair]:
    async with TRANSPORTS[name].maker(request) as factory:
        pair = TransportPair(factory)
        try:
            yield pair
        finally:
            await pair.aclose()
