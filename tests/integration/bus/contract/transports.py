"""The transports the contract suite runs over: one factory function each."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from overt.bus.amqp.agent import AmqpAgentTransport
from overt.bus.amqp.engine import AmqpEngineTransport
from overt.bus.amqp.link import Backoff
from overt.bus.base import AgentTransport, EngineTransport, NodeAddress
from overt.bus.direct.agent import AgentServerSettings, DirectAgentTransport
from overt.bus.direct.engine import DirectEngineTransport
from overt.bus.direct.gateway import NodeGateway
from overt.bus.loopback import LoopbackBus
from tests.integration.bus.contract.harness import TransportFactory, contract_transport
from tests.integration.node.harness import Pki, free_port
from tests.support.broker import Broker


class DirectTransports:
    """Standalone mode: the engine calls each node over HTTPS with mutual TLS, nodes post
    their events to the engine's gateway; identities come from a real engine CA."""

    def __init__(self, pki: Pki, gateway: NodeGateway, directory: Path) -> None:
        self._pki = pki
        self._gateway = gateway
        self._directory = directory

    async def engine(self) -> EngineTransport:
        return DirectEngineTransport(self._pki.engine, gateway=self._gateway)

    async def node(self, host_uuid: uuid.UUID) -> tuple[AgentTransport, NodeAddress]:
        identity = self._pki.enroll_node(self._directory / str(host_uuid), host_uuid,
                                         f"https://127.0.0.1:{self._gateway.port}")
        port = free_port()
        agent = DirectAgentTransport(identity, AgentServerSettings(listen_address="127.0.0.1",
                                                                   port=port))
        return agent, NodeAddress(host_uuid, url=f"https://127.0.0.1:{port}")


@contract_transport("direct")
@asynccontextmanager
async def direct_transports(request: pytest.FixtureRequest) -> AsyncIterator[TransportFactory]:
    directory: Path = request.getfixturevalue("tmp_path")
    pki = Pki(directory / "pki")
    gateway = NodeGateway(pki.engine, host="127.0.0.1", port=0)
    await gateway.start()
    try:
        yield DirectTransports(pki, gateway, directory / "nodes")
    finally:
        await gateway.stop()

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


class LoopbackTransports:
    """The fast lane's transport: engine and nodes in this process, no socket."""

    def __init__(self) -> None:
        self._bus = LoopbackBus()

    async def engine(self) -> EngineTransport:
        return self._bus.engine()

    async def node(self, host_uuid: uuid.UUID) -> tuple[AgentTransport, NodeAddress]:
        return self._bus.agent(host_uuid), NodeAddress(host_uuid)


@contract_transport("loopback")
@asynccontextmanager
async def loopback_transports(request: pytest.FixtureRequest) -> AsyncIterator[TransportFactory]:
    yield LoopbackTransports()
