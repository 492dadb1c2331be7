"""Fixtures of the AMQP transport's own tests: ends of the transport on this run's vhost."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest_asyncio

from overt.bus.amqp.agent import AmqpAgentTransport
from overt.bus.amqp.engine import AmqpEngineTransport
from overt.bus.base import CommandHandler
from overt.protocol.enrollment import BrokerCredentials
from tests.integration.bus.contract.harness import RecordingSink, answering_handler
from tests.integration.bus.contract.transports import TEST_BACKOFF
from tests.support.broker import Broker


@dataclass
class EnrolledNode:
    host_uuid: uuid.UUID
    credentials: BrokerCredentials
    agent: AmqpAgentTransport


NodeStarter = Callable[..., Awaitable[EnrolledNode]]


@pytest_asyncio.fixture
async def sink() -> RecordingSink:
    return RecordingSink()


@pytest_asyncio.fixture
async def engine(rabbitmq: Broker, sink: RecordingSink) -> AsyncIterator[AmqpEngineTransport]:
    """A started engine end (a monitor's: events go to the recording sink)."""
    transport = AmqpEngineTransport(await rabbitmq.engine_url(), backoff=TEST_BACKOFF)
    await transport.start(sink)
    yield transport
    await transport.close()


@pytest_asyncio.fixture
async def start_node(rabbitmq: Broker) -> AsyncIterator[NodeStarter]:
    """`await start_node(handler=answering_handler)`: enroll a node, start its agent end."""
    nodes: list[EnrolledNode] = []

    async def start(handler: Callable[[uuid.UUID], CommandHandler] = answering_handler
                    ) -> EnrolledNode:
        host_uuid = uuid.uuid4()
        credentials = await rabbitmq.enroll(host_uuid)
        node = EnrolledNode(host_uuid, credentials,
                            AmqpAgentTransport(credentials, host_uuid, backoff=TEST_BACKOFF))
        nodes.append(node)
        await node.agent.start(handler(host_uuid))
        return node

    yield start
    for node in nodes:
        await node.agent.close()
