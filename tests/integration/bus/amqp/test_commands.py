"""Commands on the broker: they expire with their caller's patience and never pile up."""

from __future__ import annotations

import functools
import time
import uuid

import aio_pika
import pytest

from overt.bus.amqp.agent import AmqpAgentTransport
from overt.bus.amqp.engine import AmqpEngineTransport
from overt.bus.amqp.topology import COMMAND_QUEUE_LIMIT, COMMANDS_EXCHANGE
from overt.bus.base import CommandTimedOut, NodeAddress, NodeUnreachable
from overt.protocol import CommandEnvelope
from overt.protocol.commands import HostCapabilitiesCommand
from tests.integration.bus.amqp.raw import raw_channel
from tests.integration.bus.contract.harness import answering_handler
from tests.integration.bus.contract.transports import TEST_BACKOFF
from tests.support.broker import Broker

pytestmark = [pytest.mark.amqp, pytest.mark.asyncio]


async def test_a_node_that_comes_back_late_never_runs_a_stale_command(
        rabbitmq: Broker, engine: AmqpEngineTransport) -> None:
    host = uuid.uuid4()
    credentials = await rabbitmq.enroll(host)
    stale = CommandEnvelope(command=HostCapabilitiesCommand(), timeout_s=0.5)
    with pytest.raises(CommandTimedOut, match="may still act on it"):
        await engine.call(NodeAddress(host), stale)
    seen: list[CommandEnvelope] = []
    agent = AmqpAgentTransport(credentials, host, backoff=TEST_BACKOFF)
    await agent.start(functools.partial(answering_handler, seen=seen)(host))
    try:
        fresh = CommandEnvelope(command=HostCapabilitiesCommand())
        assert (await engine.call(NodeAddress(host), fresh)).ok
    finally:
        await agent.close()
    assert [envelope.request_id for envelope in seen] == [fresh.request_id]


async def test_commands_for_a_node_that_takes_none_stop_piling_up(
        rabbitmq: Broker, engine: AmqpEngineTransport) -> None:
    host = uuid.uuid4()
    await rabbitmq.enroll(host)
    async with raw_channel(await rabbitmq.engine_url()) as channel:
        commands = await channel.get_exchange(COMMANDS_EXCHANGE)
        for _ in range(COMMAND_QUEUE_LIMIT):
            await commands.publish(aio_pika.Message(b"{}", expiration=60), str(host))
    started = time.monotonic()
    with pytest.raises(NodeUnreachable, match="command queue is full"):
        await engine.call(NodeAddress(host), CommandEnvelope(command=HostCapabilitiesCommand()))
    assert time.monotonic() - started < 2
