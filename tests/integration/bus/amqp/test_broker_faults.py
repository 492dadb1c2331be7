"""The broker goes away and comes back: nothing is lost, nothing hangs, nobody crashes.

These tests stop and start a real RabbitMQ. They use a private RabbitMQ node of
their own (own name, ports and data directory), so the machine's broker and
whoever uses it are never disturbed; the node is left running after each test
and removed at the end of the module.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import resource
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from overt.bus.amqp.agent import AmqpAgentTransport
from overt.bus.amqp.engine import AmqpEngineTransport
from overt.bus.base import NodeAddress, NodeUnreachable, TransportError
from overt.protocol import CommandEnvelope, Reply
from overt.protocol.commands import HostCapabilitiesCommand, VmStatus
from overt.protocol.host import VmStatusReport
from overt.system.daemons import ensure_rabbitmq, stop_rabbitmq
from tests.conftest import require_root
from tests.integration.bus.contract.harness import (
    RecordingSink,
    answering_handler,
    first_seen,
    heartbeat,
)
from tests.integration.bus.contract.transports import TEST_BACKOFF
from tests.support.broker import Broker, private_broker

pytestmark = [pytest.mark.amqp, pytest.mark.slow]


@pytest.fixture(scope="module")
def private_rabbitmq() -> Iterator[Broker]:
    """A RabbitMQ node for this module alone, that its tests may stop and start."""
    require_root()
    with private_broker() as broker:
        yield broker


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info and r.levelno >= logging.INFO]


@asynccontextmanager
async def ends(broker: Broker, host_uuid: uuid.UUID, handler_for=answering_handler,  # type: ignore[no-untyped-def]
               connected: list[str] | None = None,
               ) -> AsyncIterator[tuple[AmqpEngineTransport, AmqpAgentTransport, RecordingSink]]:
    """A monitor's engine end and a node's agent end, started, closed afterwards; each
    (re)connection of either end is noted in `connected`."""
    notes = connected if connected is not None else []

    async def note(end: str) -> None:
        notes.append(end)

    sink = RecordingSink()
    engine = AmqpEngineTransport(await broker.engine_url(), backoff=TEST_BACKOFF,
                                 on_connected=functools.partial(note, "engine"))
    agent = AmqpAgentTransport(await broker.enroll(host_uuid), host_uuid, backoff=TEST_BACKOFF,
                               on_connected=functools.partial(note, "node"))
    try:
        await engine.start(sink)
        await agent.start(handler_for(host_uuid))
        yield engine, agent, sink
    finally:
        await agent.close()
        await engine.close()


@pytest.mark.asyncio
async def test_transports_started_while_the_broker_is_down_say_so_and_connect_later(
        private_rabbitmq: Broker, caplog: pytest.LogCaptureFixture) -> None:
    broker, host = private_rabbitmq, uuid.uuid4()
    engine_url = await broker.engine_url()
    credentials = await broker.enroll(host)
    await asyncio.to_thread(stop_rabbitmq, broker.node)
    caplog.set_level(logging.INFO)
    sink = RecordingSink()
    engine = AmqpEngineTransport(engine_url, backoff=TEST_BACKOFF)
    agent = AmqpAgentTransport(credentials, host, backoff=TEST_BACKOFF)
    try:
        await engine.start(sink)
        await agent.start(answering_handler(host))
        started = time.monotonic()
        with pytest.raises(NodeUnreachable, match="no connection to the broker"):
            await engine.call(NodeAddress(host),
                              CommandEnvelope(command=HostCapabilitiesCommand(), timeout_s=30))
        assert time.monotonic() - started < 1
        boot = uuid.uuid4()
        await agent.publish(heartbeat(host, boot, 1))  # kept until the broker takes it
        errors = [r.getMessage() for r in caplog.records
                  if r.name.startswith("overt.") and r.levelno >= logging.ERROR]
        expected = f"nothing answers at 127.0.0.1:{broker.node.amqp_port} (is RabbitMQ running?)"
        assert len([m for m in errors if expected in m]) == 2, errors  # engine and node, once
        await asyncio.to_thread(ensure_rabbitmq, broker.node)
        async with asyncio.timeout(30):
            await engine.wait_connected()
            await agent.wait_connected()
        reply = await engine.call(NodeAddress(host),
                                  CommandEnvelope(command=HostCapabilitiesCommand()))
        assert reply.ok
        assert await sink.wait_for_seqs(host, 1) == [1]
    finally:
        await agent.close()
        await engine.close()
    assert tracebacks(caplog) == []


@pytest.mark.asyncio
async def test_a_broker_restart_loses_no_event_and_no_reply(
        private_rabbitmq: Broker, caplog: pytest.LogCaptureFixture) -> None:
    """A long command (a VM start) runs across the restart and its caller still gets the
    reply; events published before, during and after arrive, in order; quick calls caught
    by the restart fail with a TransportError or succeed, never hang."""
    broker, host = private_rabbitmq, uuid.uuid4()
    slow_vm, started, release = uuid.uuid4(), asyncio.Event(), asyncio.Event()

    def handler_for(host_uuid: uuid.UUID):  # type: ignore[no-untyped-def]
        answer = answering_handler(host_uuid)

        async def handle(envelope: CommandEnvelope) -> Reply:
            if isinstance(envelope.command, VmStatus) and envelope.command.vm_id == slow_vm:
                started.set()
                await release.wait()
            return await answer(envelope)
        return handle

    caplog.set_level(logging.INFO)
    connected: list[str] = []
    async with ends(broker, host, handler_for, connected) as (engine, agent, sink):
        node, boot, count = NodeAddress(host), uuid.uuid4(), 400

        async def publish_events() -> None:
            for seq in range(1, count + 1):
                await agent.publish(heartbeat(host, boot, seq))
                await asyncio.sleep(0.03)

        publisher = asyncio.create_task(publish_events())
        long_call = asyncio.create_task(engine.call(
            node, CommandEnvelope(command=VmStatus(vm_id=slow_vm), timeout_s=120)))
        await asyncio.wait_for(started.wait(), 10)
        quick_calls = [asyncio.create_task(engine.call(
            node, CommandEnvelope(command=VmStatus(vm_id=uuid.uuid4()), timeout_s=60)))
            for _ in range(20)]
        await asyncio.to_thread(stop_rabbitmq, broker.node)
        release.set()  # the VM start ends while the broker is away
        await asyncio.to_thread(ensure_rabbitmq, broker.node)
        async with asyncio.timeout(30):
            await engine.wait_connected()
            await agent.wait_connected()
        reply = await asyncio.wait_for(long_call, 60)
        assert VmStatusReport.model_validate(reply.result).vm_id == slow_vm
        async with asyncio.timeout(70):
            outcomes = await asyncio.gather(*quick_calls, return_exceptions=True)
        assert all(isinstance(o, Reply | TransportError) for o in outcomes), outcomes
        await publisher
        seqs = await sink.wait_for_seqs(host, count, within=60)
        assert first_seen(seqs) == list(range(1, count + 1))
        after = await engine.call(node, CommandEnvelope(command=HostCapabilitiesCommand()))
        assert after.ok
    assert sorted(connected) == ["engine", "engine", "node", "node"]  # the hooks, to resync
    messages = caplog.text
    assert "lost the connection to the broker" in messages
    assert "answering from the first run" in messages  # the command came back, ran once
    assert tracebacks(caplog) == []


def test_the_broker_ensure_rabbitmq_starts_may_hold_thousands_of_connections(
        private_rabbitmq: Broker) -> None:
    """Not the 1024 open files (about 800 connections) of a start through `su`."""
    base_dir = private_rabbitmq.node.base_dir
    assert base_dir is not None
    pid = (base_dir / "rabbitmq.pid").read_text().strip()
    limits = Path(f"/proc/{pid}/limits").read_text()
    soft = int(next(line for line in limits.splitlines()
                    if line.startswith("Max open files")).split()[3])
    assert soft >= min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 4096)
