"""Malformed, unauthorized and foreign messages are refused, logged and dead-lettered,
and the consumer that met them goes on with the next good message."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import pytest

from overt.bus.amqp.engine import AmqpEngineTransport
from overt.bus.amqp.topology import (
    COMMANDS_EXCHANGE,
    DEAD_QUEUE,
    EVENTS_EXCHANGE,
    REPLIES_EXCHANGE,
    STATS_EXCHANGE,
    declare_queue,
    event_routing_key,
    reply_queue,
)
from overt.bus.base import NodeAddress, TransportError
from overt.protocol import CommandEnvelope, ErrorCode, Reply, decode_reply
from overt.protocol.commands import HostCapabilitiesCommand
from overt.protocol.host import HostCapabilities
from tests.integration.bus.amqp.conftest import NodeStarter
from tests.integration.bus.amqp.raw import publish_raw, raw_channel
from tests.integration.bus.contract.harness import (
    RecordingSink,
    answering_handler,
    capabilities,
    eventually,
    heartbeat,
    stats_sample,
)
from tests.support.broker import Broker

pytestmark = [pytest.mark.amqp, pytest.mark.asyncio]


def rejections(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected")]


async def dead_letters(broker: Broker, host_uuid: uuid.UUID, count: int
                       ) -> list[tuple[bytes, str]]:
    """Take the node's first `count` dead messages: (body, why it died)."""
    found: list[tuple[bytes, str]] = []
    async with raw_channel(broker.admin_url) as channel, asyncio.timeout(10):
        queue = await channel.get_queue(DEAD_QUEUE)
        while len(found) < count:
            message = await queue.get(fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            await message.ack()
            if str(host_uuid) in (message.routing_key or ""):
                death = message.headers["x-death"][0]  # type: ignore[index]
                found.append((message.body, str(death["reason"])))  # type: ignore[index]
    return found


async def test_malformed_and_unknown_version_events_are_dead_lettered_not_delivered(
        rabbitmq: Broker, engine: AmqpEngineTransport, sink: RecordingSink,
        start_node: NodeStarter, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="overt.bus.amqp")
    node = await start_node()
    url, user, boot = node.credentials.url, node.credentials.username, uuid.uuid4()
    key = event_routing_key(node.host_uuid, "host.heartbeat")
    future = json.loads(heartbeat(node.host_uuid, boot, 1).model_dump_json()) | {"version": 99}
    await publish_raw(url, EVENTS_EXCHANGE, key, b"{not json", user_id=user)
    await publish_raw(url, EVENTS_EXCHANGE, key, json.dumps(future).encode(), user_id=user)
    await publish_raw(url, EVENTS_EXCHANGE, key, b'{"version": 1}', user_id=user)
    await publish_raw(url, STATS_EXCHANGE, key,
                      heartbeat(node.host_uuid, boot, 1).model_dump_json().encode(), user_id=user)
    await node.agent.publish(heartbeat(node.host_uuid, boot, 1))
    await node.agent.publish_lossy(stats_sample(node.host_uuid, boot))
    assert await sink.wait_for_seqs(node.host_uuid, 1) == [1]
    reasons = "\n".join(rejections(caplog))
    assert "is not JSON" in reasons
    assert "version 99 is not supported" in reasons
    assert "malformed event" in reasons
    assert "sequenced event 1 sent on the lossy stats path" in reasons
    # Stats are dropped (they expire and overflow by design: no dead-lettering).
    dead = await dead_letters(rabbitmq, node.host_uuid, 3)
    assert {reason for _body, reason in dead} == {"rejected"}
    assert b"{not json" in [body for body, _reason in dead]


async def test_a_malformed_command_is_answered_with_an_error_and_serving_goes_on(
        rabbitmq: Broker, engine: AmqpEngineTransport, start_node: NodeStarter,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="overt.bus.amqp")
    node = await start_node()
    engine_url = await rabbitmq.engine_url()
    good = json.loads(CommandEnvelope(command=HostCapabilitiesCommand()).model_dump_json())
    async with raw_channel(engine_url) as channel:
        spec = reply_queue(f"test-{uuid.uuid4().hex[:8]}")
        await declare_queue(channel, spec)
        replies = await channel.get_queue(spec.name)
        bad = {str(uuid.uuid4()): b"{not json",
               str(uuid.uuid4()): json.dumps(good | {"version": 99}).encode(),
               str(uuid.uuid4()): json.dumps(good | {"command": {"name": "vm.explode"}}).encode()}
        for request_id, body in bad.items():
            await publish_raw(engine_url, COMMANDS_EXCHANGE, str(node.host_uuid), body,
                              correlation_id=request_id, reply_to=replies.name)
        answers = {}
        async with asyncio.timeout(10):
            async with replies.iterator() as incoming:
                async for message in incoming:
                    await message.ack()
                    answers[message.correlation_id] = (decode_reply(message.body),
                                                       message.user_id)
                    if len(answers) == len(bad):
                        break
    codes = {request_id: reply.error.code for request_id, (reply, _user) in answers.items()
             if reply.error is not None}
    assert codes == dict(zip(bad, [ErrorCode.BAD_REQUEST, ErrorCode.UNSUPPORTED_VERSION,
                                   ErrorCode.BAD_REQUEST], strict=True))
    assert {user for _reply, user in answers.values()} == {node.credentials.username}
    assert len(rejections(caplog)) == 3
    reply = await engine.call(NodeAddress(node.host_uuid),
                              CommandEnvelope(command=HostCapabilitiesCommand()))
    assert HostCapabilities.model_validate(reply.result).host_uuid == node.host_uuid


async def test_a_reply_forged_by_another_node_is_dropped_and_the_real_one_awaited(
        engine: AmqpEngineTransport, start_node: NodeStarter,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="overt.bus.amqp")
    asked, release = asyncio.Queue[uuid.UUID](), asyncio.Event()

    def slow(host_uuid: uuid.UUID):  # type: ignore[no-untyped-def]
        async def handle(envelope: CommandEnvelope) -> Reply:
            await asked.put(envelope.request_id)
            await release.wait()
            return Reply.success(envelope.request_id, capabilities(host_uuid))
        return handle

    node, forger = await start_node(slow), await start_node()
    call = asyncio.create_task(engine.call(NodeAddress(node.host_uuid),
                                           CommandEnvelope(command=HostCapabilitiesCommand())))
    request_id = await asked.get()
    forged = Reply.success(request_id, capabilities(forger.host_uuid))
    await publish_raw(forger.credentials.url, REPLIES_EXCHANGE,
                      f"overt.engine.{engine.instance}.replies",
                      forged.model_dump_json().encode(), user_id=forger.credentials.username,
                      correlation_id=str(request_id))
    await eventually(lambda: bool(rejections(caplog)), what="the forged reply's rejection")
    assert not call.done()
    release.set()
    reply = await call
    assert HostCapabilities.model_validate(reply.result).host_uuid == node.host_uuid
    assert f"came from broker user '{forger.credentials.username}'" in rejections(caplog)[0]


async def test_an_unreadable_reply_from_the_node_asked_fails_the_call_at_once(
        engine: AmqpEngineTransport, start_node: NodeStarter) -> None:
    asked = asyncio.Queue[uuid.UUID]()

    def silent(_host_uuid: uuid.UUID):  # type: ignore[no-untyped-def]
        async def handle(envelope: CommandEnvelope) -> Reply:
            await asked.put(envelope.request_id)
            await asyncio.Event().wait()
            raise AssertionError("never answers")
        return handle

    node = await start_node(silent)
    call = asyncio.create_task(engine.call(
        NodeAddress(node.host_uuid),
        CommandEnvelope(command=HostCapabilitiesCommand(), timeout_s=60)))
    request_id = await asked.get()
    await publish_raw(node.credentials.url, REPLIES_EXCHANGE,
                      f"overt.engine.{engine.instance}.replies", b'{"version": 1}',
                      user_id=node.credentials.username, correlation_id=str(request_id))
    with pytest.raises(TransportError, match="cannot be read"):
        async with asyncio.timeout(10):
            await call
    node_two = await start_node(answering_handler)
    reply = await engine.call(NodeAddress(node_two.host_uuid),
                              CommandEnvelope(command=HostCapabilitiesCommand()))
    assert reply.ok
