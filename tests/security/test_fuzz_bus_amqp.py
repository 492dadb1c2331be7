"""Fuzzing the AMQP transport (a real RabbitMQ): malformed commands of every type to a node's
command queue, malformed events of every type from a node. Each is refused (an error reply,
a rejection), reaches neither the node's handler nor the engine's sink, and both ends keep
serving."""

from __future__ import annotations

import asyncio
import json
import uuid

import aio_pika
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overt.bus.amqp.engine import AmqpEngineTransport
from overt.bus.amqp.topology import (
    COMMANDS_EXCHANGE,
    EVENTS_EXCHANGE,
    declare_queue,
    event_routing_key,
    reply_queue,
)
from overt.bus.base import CommandHandler, NodeAddress
from overt.protocol import CommandEnvelope, Reply, decode_reply
from overt.protocol.commands import HostCapabilitiesCommand
from tests.integration.bus.amqp.conftest import NodeStarter, engine, sink, start_node
from tests.integration.bus.amqp.raw import raw_channel
from tests.integration.bus.contract.harness import RecordingSink, capabilities, heartbeat
from tests.security.malformed import malformed_command, malformed_event
from tests.support.broker import Broker

pytestmark = [pytest.mark.amqp]
__all__ = ["engine", "sink", "start_node"]

BATCH = 25
FUZZ = settings(max_examples=4, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def _counting(seen: list[CommandEnvelope]):  # type: ignore[no-untyped-def]
    def handler(host_uuid: uuid.UUID) -> CommandHandler:
        async def handle(envelope: CommandEnvelope) -> Reply:
            seen.append(envelope)
            return Reply.success(envelope.request_id, capabilities(host_uuid))
        return handle
    return handler


@FUZZ
@given(messages=st.lists(malformed_command(), min_size=BATCH, max_size=BATCH))
async def test_fuzz_malformed_commands_to_a_node(rabbitmq: Broker, engine: AmqpEngineTransport,
                                                 start_node: NodeStarter,
                                                 messages: list[tuple[str, str]]) -> None:
    seen: list[CommandEnvelope] = []
    node = await start_node(_counting(seen))
    async with raw_channel(await rabbitmq.engine_url()) as channel:
        spec = reply_queue(f"fuzz-{uuid.uuid4().hex[:8]}")
        await declare_queue(channel, spec)
        replies = await channel.get_queue(spec.name)
        exchange = await channel.get_exchange(COMMANDS_EXCHANGE, ensure=False)
        for _name, body in messages:
            await exchange.publish(aio_pika.Message(body.encode(), reply_to=spec.name,
                                                    correlation_id=str(uuid.uuid4())),
                                   str(node.host_uuid))
        answered = 0
        async with asyncio.timeout(30), replies.iterator() as incoming:
            async for message in incoming:
                await message.ack()
                reply = decode_reply(message.body)
                assert not reply.ok and reply.error is not None
                answered += 1
                if answered == len(messages):
                    break
        await replies.delete(if_unused=False, if_empty=False)
    assert seen == []
    reply = await engine.call(NodeAddress(node.host_uuid),
                              CommandEnvelope(command=HostCapabilitiesCommand()))
    assert reply.ok and len(seen) == 1


@FUZZ
@given(data=st.data())
async def test_fuzz_malformed_events_from_a_node(engine: AmqpEngineTransport, sink: RecordingSink,
                                                 start_node: NodeStarter,
                                                 data: st.DataObject) -> None:
    node = await start_node()
    boot = uuid.uuid4()
    async with raw_channel(node.credentials.url) as channel:
        exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
        for _ in range(BATCH):
            kind, event = data.draw(malformed_event(node.host_uuid, boot))
            await exchange.publish(
                aio_pika.Message(json.dumps(event).encode(),
                                 user_id=node.credentials.username),
                event_routing_key(node.host_uuid, kind))
    await node.agent.publish(heartbeat(node.host_uuid, boot, 1))
    assert await sink.wait_for_seqs(node.host_uuid, 1) == [1]
    assert [e for e in sink.events if e.host_uuid == node.host_uuid and e.seq != 1] == []
