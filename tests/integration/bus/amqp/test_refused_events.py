"""A broker that keeps refusing a node's event (a nack: the queue's leader moved in a
cluster, or the queue is full) makes the node connect again, and the event goes through
once the broker takes it: nothing lost, nothing out of order."""

from __future__ import annotations

import logging
import re
import uuid
from urllib.parse import quote

import httpx
import pytest

from overt.bus.amqp.engine import AmqpEngineTransport
from overt.bus.amqp.topology import event_partition, partition_queue
from tests.integration.bus.amqp.conftest import NodeStarter
from tests.integration.bus.contract.harness import RecordingSink, eventually, heartbeat
from tests.support.broker import Broker

pytestmark = [pytest.mark.amqp, pytest.mark.asyncio]


async def test_a_node_whose_events_are_refused_connects_again_and_delivers_them(
        rabbitmq: Broker, engine: AmqpEngineTransport, sink: RecordingSink,
        start_node: NodeStarter, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="overt.bus.amqp")
    node = await start_node()
    queue = partition_queue(event_partition(node.host_uuid)).name
    policy = (f"http://127.0.0.1:{rabbitmq.node.management_port}/api/policies/"
              f"{quote(rabbitmq.vhost, safe='')}/refuse-{node.host_uuid}")
    auth = (rabbitmq.admin_user, rabbitmq.admin_password)
    async with httpx.AsyncClient(auth=auth, timeout=10) as http:
        # Above Overt's own policy: the node's partition queue takes nothing (nacks).
        refused = await http.put(policy, json={
            "pattern": f"^{re.escape(queue)}$", "apply-to": "queues", "priority": 100,
            "definition": {"max-length": 0, "overflow": "reject-publish"}})
        assert refused.status_code in (201, 204)
        boot = uuid.uuid4()
        try:
            await node.agent.publish(heartbeat(node.host_uuid, boot, 1))
            await node.agent.publish(heartbeat(node.host_uuid, boot, 2))
            await eventually(lambda: any("refused event 1 3 times in a row" in r.getMessage()
                                         for r in caplog.records), within=20)
        finally:
            await http.delete(policy)
    assert await sink.wait_for_seqs(node.host_uuid, 2) == [1, 2]
    connected = [r for r in caplog.records if "connected to the broker" in r.getMessage()
                 and f"overt-node-{node.host_uuid}" in r.getMessage()]
    assert len(connected) >= 2  # the first connection, then the one after the refusals
