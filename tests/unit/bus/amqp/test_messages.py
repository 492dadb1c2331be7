import json
import uuid

import pytest
from aio_pika import DeliveryMode

from overt.bus.amqp.messages import (
    MessageRejected,
    command_message,
    event_message,
    parse_request_id,
    read_event,
    read_reply,
)
from overt.bus.amqp.topology import event_routing_key, node_username
from overt.protocol import CommandEnvelope, EventEnvelope, Reply
from overt.protocol.commands import HostCapabilitiesCommand
from overt.protocol.events import Heartbeat, StatsSample
from overt.protocol.host import HostStats, VmState, VmStatusReport

HOST, OTHER, BOOT = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
KEY = event_routing_key(HOST, "host.heartbeat")


def beat(seq: int | None = 1, host: uuid.UUID = HOST) -> EventEnvelope:
    return EventEnvelope(host_uuid=host, boot_id=BOOT, seq=seq,
                         event=Heartbeat(vm_count=0, free_memory_mib=1, uptime_s=1))


def body(event: EventEnvelope) -> bytes:
    return event.model_dump_json().encode()


def test_an_event_from_its_own_node_is_read() -> None:
    event = beat()
    assert read_event(body(event), user_id=node_username(HOST), routing_key=KEY,
                      lossy=False) == event


@pytest.mark.parametrize(("raw", "user", "key", "lossy", "reason"), [
    (b"{", node_username(HOST), KEY, False, "not JSON"),
    (body(beat()), None, KEY, False, "no user_id"),
    (body(beat()), node_username(OTHER), KEY, False, "sent an event of node"),
    (body(beat()), node_username(HOST), event_routing_key(HOST, "vm.lifecycle"), False,
     "does not match the event"),
    (body(beat()), node_username(HOST), KEY, True, "on the lossy stats path"),
    (body(beat(None)), node_username(HOST), KEY, False, "without a sequence number"),
    (json.dumps(json.loads(body(beat())) | {"version": 7}).encode(), node_username(HOST), KEY,
     False, "version 7 is not supported"),
])
def test_events_that_cannot_be_trusted_are_rejected_with_the_reason(
        raw: bytes, user: str | None, key: str, lossy: bool, reason: str) -> None:
    with pytest.raises(MessageRejected, match=reason):
        read_event(raw, user_id=user, routing_key=key, lossy=lossy)


def test_replies_are_accepted_only_from_the_node_asked_and_for_the_request_asked() -> None:
    request = uuid.uuid4()
    reply = Reply.success(request, VmStatusReport(vm_id=None, name="a", state=VmState.RUNNING))
    raw = reply.model_dump_json().encode()
    assert read_reply(raw, user_id=node_username(HOST), request_id=request,
                      host_uuid=HOST) == reply
    with pytest.raises(MessageRejected, match="came from broker user"):
        read_reply(raw, user_id=node_username(OTHER), request_id=request, host_uuid=HOST)
    with pytest.raises(MessageRejected, match="carried correlation id"):
        read_reply(raw, user_id=node_username(HOST), request_id=uuid.uuid4(), host_uuid=HOST)


def test_sequenced_events_are_persistent_and_stats_are_not() -> None:
    assert event_message(beat(), user_id="u").delivery_mode == DeliveryMode.PERSISTENT
    stats = EventEnvelope(host_uuid=HOST, boot_id=BOOT, event=StatsSample(
        interval_s=1, host=HostStats(cpu_percent=0, memory_total_mib=1, memory_used_mib=0,
                                     memory_free_mib=1)))
    message = event_message(stats, user_id="u")
    assert message.delivery_mode == DeliveryMode.NOT_PERSISTENT
    assert message.user_id == "u"


def test_a_command_expires_when_its_caller_stops_waiting() -> None:
    envelope = CommandEnvelope(command=HostCapabilitiesCommand(), timeout_s=30)
    message = command_message(envelope, reply_to="overt.engine.x.replies", user_id="engine",
                              expires_in=12.5)
    assert message.properties.expiration == "12500"
    assert message.correlation_id == str(envelope.request_id)
    assert message.delivery_mode == DeliveryMode.PERSISTENT
    assert parse_request_id(message.correlation_id) == envelope.request_id
    assert parse_request_id("nonsense") is None
