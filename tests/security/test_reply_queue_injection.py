"""A node's broker account against the engine's queues (a real RabbitMQ): it cannot answer
for another node, cannot fill the shared dead-letter queue (flushing what is there), and
cannot publish without saying who it is."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import aiormq
import pytest

from overt.bus.amqp.engine import AmqpEngineTransport
from overt.bus.amqp.topology import (
    DEAD_QUEUE,
    EVENTS_EXCHANGE,
    REPLIES_EXCHANGE,
    event_routing_key,
)
from overt.bus.base import NodeAddress
from overt.protocol import CommandEnvelope, Reply
from overt.protocol.commands import HostCapabilitiesCommand
from overt.protocol.host import HostCapabilities
from tests.integration.bus.amqp.conftest import NodeStarter, engine, sink, start_node
from tests.integration.bus.amqp.raw import publish_raw, raw_channel
from tests.integration.bus.contract.harness import capabilities
from tests.support.broker import Broker

pytestmark = [pytest.mark.amqp, pytest.mark.asyncio]
__all__ = ["engine", "sink", "start_node"]

FLOOD = 300
DEAD_LETTER_BUDGET = 50  # overt.bus.amqp.messages.DEAD_LETTER_BUDGET


async def _flood(url: str, exchange: str, routing_key: str, body: bytes, *, user_id: str,
                 correlation_id: str | None = None) -> None:
    async with raw_channel(url) as channel:
        target = await channel.get_exchange(exchange, ensure=False)
        for _ in range(FLOOD):
            await target.publish(aio_pika.Message(body, user_id=user_id,
                                                  correlation_id=correlation_id),
                                 routing_key, mandatory=False)


async def _dead_letters_of(broker: Broker, user: str, settle_s: float = 3.0) -> int:
    """How many messages published by `user` are in the dead-letter queue (after the
    engine has had `settle_s` to reject what it rejects)."""
    await asyncio.sleep(settle_s)
    async with raw_channel(broker.admin_url) as channel:
        queue = await channel.get_queue(DEAD_QUEUE)
        count = 0
        while (message := await queue.get(fail=False)) is not None:
            await message.ack()
            count += message.user_id == user
    return count


async def test_reply_queue_injection_neither_answers_for_another_node_nor_floods_dead_letters(
        rabbitmq: Broker, engine: AmqpEngineTransport, start_node: NodeStarter) -> None:
    asked, release = asyncio.Queue[uuid.UUID](), asyncio.Event()

    def slow(host_uuid: uuid.UUID):  # type: ignore[no-untyped-def]
        async def handle(envelope: CommandEnvelope) -> Reply:
            await asked.put(envelope.request_id)
            await release.wait()
            return Reply.success(envelope.request_id, capabilities(host_uuid))
        return handle

    node, forger = await start_node(slow), await start_node()
    await _dead_letters_of(rabbitmq, forger.credentials.username, 0)  # start empty
    call = asyncio.create_task(engine.call(NodeAddress(node.host_uuid),
                                           CommandEnvelope(command=HostCapabilitiesCommand())))
    request_id = await asked.get()
    forged = Reply.success(request_id, capabilities(forger.host_uuid)).model_dump_json().encode()
    await _flood(forger.credentials.url, REPLIES_EXCHANGE,
                 f"overt.engine.{engine.instance}.replies", forged,
                 user_id=forger.credentials.username, correlation_id=str(request_id))
    dead = await _dead_letters_of(rabbitmq, forger.credentials.username)
    assert not call.done()
    release.set()
    reply = await call
    assert HostCapabilities.model_validate(reply.result).host_uuid == node.host_uuid
    assert dead <= DEAD_LETTER_BUDGET < FLOOD


async def test_malformed_events_cannot_flush_the_dead_letter_queue(
        rabbitmq: Broker, engine: AmqpEngineTransport, start_node: NodeStarter) -> None:
    node = await start_node()
    user = node.credentials.username
    await _dead_letters_of(rabbitmq, user, 0)
    key = event_routing_key(node.host_uuid, "host.heartbeat")
    await _flood(node.credentials.url, EVENTS_EXCHANGE, key, b"{not json", user_id=user)
    assert await _dead_letters_of(rabbitmq, user) <= DEAD_LETTER_BUDGET < FLOOD


async def test_a_node_cannot_publish_as_another_user_or_into_the_dead_letter_exchange(
        rabbitmq: Broker, start_node: NodeStarter) -> None:
    node, other = await start_node(), await start_node()
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
        await publish_raw(node.credentials.url, EVENTS_EXCHANGE,
                          event_routing_key(node.host_uuid, "host.heartbeat"), b"{}",
                          user_id=other.credentials.username)
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
        await publish_raw(node.credentials.url, "overt.dead", "", b"{}",
                          user_id=node.credentials.username)
