"""Each node's broker account can do its own work and nothing else; the broker says no."""

from __future__ import annotations

import logging
import uuid

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from aiormq.exceptions import (
    ChannelAccessRefused,
    ChannelPreconditionFailed,
    ProbableAuthenticationError,
)

from overt.bus.amqp.agent import AmqpAgentTransport
from overt.bus.amqp.engine import AmqpEngineTransport
from overt.bus.amqp.topology import COMMANDS_EXCHANGE, STATS_EXCHANGE, node_username
from overt.bus.base import NodeAddress, NodeUnreachable
from overt.protocol import CommandEnvelope
from overt.protocol.commands import HostCapabilitiesCommand
from tests.integration.bus.amqp.conftest import NodeStarter
from tests.integration.bus.amqp.raw import publish_event_as, publish_raw, raw_channel
from tests.integration.bus.contract.harness import (
    RecordingSink,
    answering_handler,
    heartbeat,
    stats_sample,
)
from tests.integration.bus.contract.transports import TEST_BACKOFF
from tests.support.broker import Broker

pytestmark = [pytest.mark.amqp, pytest.mark.asyncio]


async def _ignore(_message: AbstractIncomingMessage) -> None:
    pass


async def test_a_node_cannot_read_another_nodes_command_queue(rabbitmq: Broker) -> None:
    a, b = await rabbitmq.enroll(), await rabbitmq.enroll()
    async with raw_channel(b.url) as channel:
        queue = await channel.get_queue(a.command_queue, ensure=False)
        with pytest.raises(ChannelAccessRefused, match="ACCESS_REFUSED"):
            await queue.consume(_ignore)
    async with raw_channel(b.url) as channel:
        queue = await channel.get_queue(a.command_queue, ensure=False)
        with pytest.raises(ChannelAccessRefused, match="ACCESS_REFUSED"):
            await queue.get(fail=False)


async def test_a_node_cannot_route_commands_to_itself(rabbitmq: Broker) -> None:
    """No declaring, no binding (to take another node's commands), no sending commands."""
    host_a = uuid.uuid4()
    b = await rabbitmq.enroll()
    await rabbitmq.enroll(host_a)
    async with raw_channel(b.url) as channel:
        queue = await channel.get_queue(b.command_queue, ensure=False)
        with pytest.raises(ChannelAccessRefused, match="ACCESS_REFUSED"):
            await queue.bind(COMMANDS_EXCHANGE, str(host_a))
    async with raw_channel(b.url) as channel:
        with pytest.raises(ChannelAccessRefused, match="ACCESS_REFUSED"):
            await channel.declare_queue("overt.node.stolen.commands", durable=True)
    with pytest.raises(ChannelAccessRefused, match="ACCESS_REFUSED"):
        await publish_raw(b.url, COMMANDS_EXCHANGE, str(host_a), b"{}")


async def test_a_node_cannot_publish_events_or_stats_as_another_node(rabbitmq: Broker) -> None:
    host_a, host_b = uuid.uuid4(), uuid.uuid4()
    await rabbitmq.enroll(host_a)
    b = await rabbitmq.enroll(host_b)
    event = heartbeat(host_a, uuid.uuid4(), 1)
    # Under another node's routing key: refused by the topic permissions.
    with pytest.raises(ChannelAccessRefused, match="ACCESS_REFUSED"):
        await publish_event_as(b.url, b.username, event)
    with pytest.raises(ChannelAccessRefused, match="ACCESS_REFUSED"):
        await publish_raw(b.url, STATS_EXCHANGE, f"node.{host_a}.stats",
                          stats_sample(host_a, uuid.uuid4()).model_dump_json().encode())
    # With another node's user_id: refused by the broker's user_id check.
    with pytest.raises(ChannelPreconditionFailed, match="user_id"):
        await publish_event_as(b.url, node_username(host_a), heartbeat(host_b, uuid.uuid4(), 1))


async def test_an_event_for_another_node_under_its_own_name_is_rejected_and_logged(
        rabbitmq: Broker, engine: AmqpEngineTransport, sink: RecordingSink,
        start_node: NodeStarter, caplog: pytest.LogCaptureFixture) -> None:
    """What the broker lets through (own user, own routing key) the engine still checks."""
    victim, forger = await start_node(), await start_node()
    boot = uuid.uuid4()
    caplog.set_level(logging.WARNING, logger="overt.bus.amqp")
    await publish_event_as(forger.credentials.url, forger.credentials.username,
                           heartbeat(victim.host_uuid, boot, 1), host_uuid=forger.host_uuid)
    await publish_event_as(forger.credentials.url, "", heartbeat(forger.host_uuid, boot, 1))
    await forger.agent.publish(heartbeat(forger.host_uuid, boot, 1))
    assert await sink.wait_for_seqs(forger.host_uuid, 1) == [1]
    assert sink.seqs(victim.host_uuid) == []
    rejections = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert any(f"sent an event of node {victim.host_uuid}" in m for m in rejections)
    assert any("has no user_id" in m for m in rejections)


async def test_enrolling_again_changes_the_password_and_revoking_closes_the_door(
        rabbitmq: Broker, engine: AmqpEngineTransport, caplog: pytest.LogCaptureFixture
) -> None:
    host = uuid.uuid4()
    first = await rabbitmq.enroll(host)
    second = await rabbitmq.enroll(host)
    assert first.url != second.url
    with pytest.raises(ProbableAuthenticationError):
        await aio_pika.connect(first.url)
    agent = AmqpAgentTransport(second, host, backoff=TEST_BACKOFF)
    await agent.start(answering_handler(host))
    await agent.wait_connected()
    caplog.set_level(logging.INFO, logger="overt.bus.amqp")
    async with rabbitmq.admin() as admin:
        await admin.revoke_node(host)
    with pytest.raises(NodeUnreachable, match="no command queue"):
        await engine.call(NodeAddress(host), CommandEnvelope(command=HostCapabilitiesCommand()))
    with pytest.raises(ProbableAuthenticationError):
        await aio_pika.connect(second.url)
    await agent.close()
    messages = caplog.text
    assert "lost the connection to the broker" in messages
    assert second.url.split(":")[2].split("@")[0] not in messages  # the password


async def test_passwords_never_reach_the_logs(rabbitmq: Broker,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    host = uuid.uuid4()
    credentials = await rabbitmq.enroll(host)
    password = credentials.url.split(":")[2].split("@")[0]
    assert password not in repr(credentials)
    wrong_port = credentials.url.replace(f":{rabbitmq.node.amqp_port}/", ":1/")
    engine = AmqpEngineTransport(wrong_port.replace(credentials.username, "someone"),
                                 backoff=TEST_BACKOFF)
    await engine.start(None)
    await engine.close()
    agent = AmqpAgentTransport(credentials.model_copy(update={"url": wrong_port}), host,
                               backoff=TEST_BACKOFF)
    await agent.start(answering_handler(host))
    await agent.close()
    assert "nothing answers at 127.0.0.1:1" in caplog.text
    assert password not in caplog.text
    assert not [r for r in caplog.records if r.exc_info and r.levelno >= logging.INFO]

