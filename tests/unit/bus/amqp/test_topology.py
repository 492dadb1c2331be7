import re
import uuid

import pytest

from overt.bus.amqp import topology
from overt.bus.amqp.topology import (
    EVENTS_EXCHANGE,
    REPLIES_EXCHANGE,
    STATS_EXCHANGE,
    command_queue_name,
    event_routing_key,
    host_of_username,
    node_permissions,
    node_username,
    reply_queue,
)

MINE, OTHER = uuid.uuid4(), uuid.uuid4()


def matches(pattern: str, name: str) -> bool:
    return re.search(pattern, name) is not None


def test_a_node_reads_its_own_command_queue_and_nothing_else() -> None:
    read = node_permissions(MINE).read
    assert matches(read, command_queue_name(MINE))
    for name in (command_queue_name(OTHER), "overt.events", "overt.dead",
                 command_queue_name(MINE) + ".x", "x" + command_queue_name(MINE)):
        assert not matches(read, name)


def test_a_node_writes_to_the_events_stats_and_replies_exchanges_only() -> None:
    write = node_permissions(MINE).write
    assert all(matches(write, x) for x in (EVENTS_EXCHANGE, STATS_EXCHANGE, REPLIES_EXCHANGE))
    for name in ("overt.commands", "amq.default", "", "overt.dead", "overt.eventsX",
                 command_queue_name(MINE)):
        assert not matches(write, name)


def test_a_node_configures_nothing() -> None:
    configure = node_permissions(MINE).configure
    assert not any(matches(configure, name) for name in (
        command_queue_name(MINE), "overt.events", "anything"))


@pytest.mark.parametrize("event_type", ["host.heartbeat", "vm.lifecycle", "host.state", "stats"])
def test_a_node_publishes_under_its_own_routing_keys_only(event_type: str) -> None:
    topic = node_permissions(MINE).topic_write
    assert matches(topic, event_routing_key(MINE, event_type))
    assert not matches(topic, event_routing_key(OTHER, event_type))
    assert not matches(topic, f"xnode.{MINE}.{event_type}")


def test_node_users_name_their_host() -> None:
    assert host_of_username(node_username(MINE)) == MINE
    assert host_of_username("overt-engine") is None
    assert host_of_username("overt-node-not-a-uuid") is None


def test_reply_queues_take_only_plain_instance_names() -> None:
    assert reply_queue("worker-1").name == "overt.engine.worker-1.replies"
    with pytest.raises(ValueError, match="instance name"):
        reply_queue("a.b#")


def test_queues_are_quorum_queues_when_asked_with_their_other_arguments_kept() -> None:
    spec = topology.command_queue(uuid.uuid4())
    quorum = topology.queue_arguments(spec, quorum=True)
    assert quorum == {**spec.arguments, "x-queue-type": "quorum"}
    assert topology.queue_arguments(spec, quorum=False) == spec.arguments
    assert "x-queue-type" not in spec.arguments  # the spec itself is left as it is
