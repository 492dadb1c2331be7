"""The transports the contract suite runs over: one factory function each."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from overt.bus.amqp import AmqpAgentTransport, AmqpEngineTransport, Backoff
from overt.bus.base import AgentTransport, EngineTransport, NodeAddress
from tests.integration.bus.contract.harness import TransportFactory, contract_transport
from tests.support.broker import Broker

# Tests reconnect fast; production backs off up to 10 s.
TEST_BACKOFF = Backoff(initial=0.1, maximum=1.0)


class AmqpTransports:
    def __init__(self, broker: Broker, engine_url: str) -> None:
        self._broker = broker
        self._engine_url = engine_url

    async def engine(self) -> EngineTransport:
        return AmqpEngineTransport(self._engine_url, backoff=TEST_BACKOFF,
                                   sink_retry=Backoff(initial=0.05, maximum=0.5))

    async def node(self, host_uuid: uuid.UUID) -> tuple[AgentTransport, NodeAddress]:
        credentials = await self._broker.enroll(host_uuid)
        return (AmqpAgentTransport(credentials, host_uuid, backoff=TEST_BACKOFF),
                NodeAddress(host_uuid))


@contract_transport("amqp", pytest.mark.amqp)
@asynccontextmanager
async def amqp_transports(request: pytest.FixtureRequest) -> AsyncIterator[TransportFactory]:
    broker: Broker = request.getfixturevalue("rabbitmq")
    yield AmqpTransports(broker, await broker.engine_url())
