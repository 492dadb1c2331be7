"""The transport contract: what the engine and the agents may count on, over any transport."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid

import pytest

from overt.bus.base import CommandTimedOut, NodeUnreachable
from overt.protocol import CommandEnvelope, EventEnvelope
from overt.protocol.commands import HostCapabilitiesCommand, VmStatus
from overt.protocol.host import HostCapabilities, VmStatusReport
from tests.integration.bus.contract.harness import (
    TransportPair,
    answering_handler,
    first_seen,
    node_name,
    stats_sample,
)

pytestmark = pytest.mark.asyncio


async def test_a_command_reaches_its_node_and_the_reply_comes_back(
        transport_pair: TransportPair) -> None:
    engine = await transport_pair.start_engine()
    node = await transport_pair.add_node()
    envelope = CommandEnvelope(command=HostCapabilitiesCommand(), timeout_s=10)
    reply = await engine.call(node.address, envelope)
    assert reply.ok and reply.request_id == envelope.request_id
    assert reply.result is not None
    assert HostCapabilities.model_validate(reply.result).host_uuid == node.host_uuid


async def test_a_call_to_a_node_that_serves_nothing_fails_in_time(
        transport_pair: TransportPair) -> None:
    engine = await transport_pair.start_engine()
    node = await transport_pair.add_node(serve=False)
    started = time.monotonic()
    with pytest.raises((CommandTimedOut, NodeUnreachable)):
        await engine.call(node.address,
                          CommandEnvelope(command=HostCapabilitiesCommand(), timeout_s=1.5))
    assert time.monotonic() - started < 1.5 + 2


async def test_replies_find_their_calls_with_many_in_flight(
        transport_pair: TransportPair) -> None:
    engine = await transport_pair.start_engine()
    nodes = [await transport_pair.add_node(functools.partial(answering_handler, jitter=0.2))
             for _ in range(3)]
    calls = [(node, CommandEnvelope(command=VmStatus(vm_id=uuid.uuid4()), timeout_s=30))
             for node in nodes for _ in range(40)]
    replies = await asyncio.gather(*(engine.call(node.address, envelope)
                                     for node, envelope in calls))
    for (node, envelope), reply in zip(calls, replies, strict=True):
        assert isinstance(envelope.command, VmStatus)
        assert reply.ok and reply.request_id == envelope.request_id
        report = VmStatusReport.model_validate(reply.result)
        assert (report.vm_id, report.name) == (envelope.command.vm_id, node_name(node.host_uuid))


async def test_a_node_never_receives_another_nodes_commands(
        transport_pair: TransportPair) -> None:
    engine = await transport_pair.start_engine()
    seen: dict[uuid.UUID, list[CommandEnvelope]] = {}

    def recording(host_uuid: uuid.UUID):  # type: ignore[no-untyped-def]
        return answering_handler(host_uuid, seen=seen.setdefault(host_uuid, []))

    a, b = await transport_pair.add_node(recording), await transport_pair.add_node(recording)
    silent = await transport_pair.add_node(serve=False)
    sent = {a.host_uuid: [CommandEnvelope(command=HostCapabilitiesCommand()) for _ in range(5)],
            b.host_uuid: [CommandEnvelope(command=HostCapabilitiesCommand()) for _ in range(5)]}
    for node in (a, b):
        for envelope in sent[node.host_uuid]:
            reply = await engine.call(node.address, envelope)
            assert HostCapabilities.model_validate(reply.result).host_uuid == node.host_uuid
    with pytest.raises((CommandTimedOut, NodeUnreachable)):
        await engine.call(silent.address,
                          CommandEnvelope(command=HostCapabilitiesCommand(), timeout_s=1))
    from_engine = {e.request_id for envelopes in sent.values() for e in envelopes}
    for node in (a, b):
        # A transport may ask its own agent things (the direct one reads the capabilities
        # it serves at enrollment); of the engine's commands each node got exactly its own.
        assert [e.request_id for e in seen[node.host_uuid] if e.request_id in from_engine] \
            == [e.request_id for e in sent[node.host_uuid]]


async def test_events_arrive_in_publish_order_per_node_at_least_once(
        transport_pair: TransportPair) -> None:
    await transport_pair.start_engine()
    a, b = await transport_pair.add_node(), await transport_pair.add_node()
    await asyncio.gather(a.send_events(150), b.send_events(150))
    for node in (a, b):
        seqs = await transport_pair.sink.wait_for_seqs(node.host_uuid, 150)
        assert first_seen(seqs) == list(range(1, 151))


async def test_an_event_the_sink_could_not_record_is_delivered_again(
        transport_pair: TransportPair) -> None:
    await transport_pair.start_engine()
    node = await transport_pair.add_node()
    refused: list[int] = []

    def refuse_once(event: EventEnvelope) -> bool:
        if event.host_uuid == node.host_uuid and event.seq in (3, 7) and event.seq not in refused:
            refused.append(event.seq)
            return True
        return False

    transport_pair.sink.refuse = refuse_once
    await node.send_events(10)
    seqs = await transport_pair.sink.wait_for_seqs(node.host_uuid, 10)
    assert refused == [3, 7]
    assert first_seen(seqs) == list(range(1, 11))


async def test_stats_never_hold_back_or_reorder_events(transport_pair: TransportPair) -> None:
    await transport_pair.start_engine()
    node = await transport_pair.add_node()
    transport_pair.sink.stats_gate.clear()  # the engine's stats path is stuck
    started = time.monotonic()
    for _ in range(40):
        for _ in range(10):
            await node.agent.publish_lossy(stats_sample(node.host_uuid, node.boot_id))
        await node.send_events(1)
    assert time.monotonic() - started < 10, "publishing stats must not wait for the engine"
    seqs = await transport_pair.sink.wait_for_seqs(node.host_uuid, 40, within=10)
    assert first_seen(seqs) == list(range(1, 41))
    transport_pair.sink.stats_gate.set()


async def test_stats_reach_the_engine_when_nothing_is_in_the_way(
        transport_pair: TransportPair) -> None:
    await transport_pair.start_engine()
    node = await transport_pair.add_node()
    for _ in range(50):
        await node.agent.publish_lossy(stats_sample(node.host_uuid, node.boot_id))
        await asyncio.sleep(0.1)
        if transport_pair.sink.stats_of(node.host_uuid):
            break
    assert transport_pair.sink.stats_of(node.host_uuid), "no stats sample arrived in 5 s"
