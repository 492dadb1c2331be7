"""A managed node reaches its broker where it was told to, with the account it was given."""

from __future__ import annotations

import uuid
from pathlib import Path

from overt.bus.direct.agent import AgentServerSettings
from overt.node.identity import NodeIdentity
from overt.node.managed import ManagedAgentTransport
from overt.protocol.enrollment import BrokerCredentials

HOST = uuid.uuid4()


def _account() -> BrokerCredentials:
    user = f"overt-node-{HOST}"
    return BrokerCredentials(url=f"amqp://{user}:pw%2F1@10.0.0.5:5672/overt", username=user,
                             command_queue=f"overt.node.{HOST}.commands",
                             events_exchange="overt.events", stats_exchange="overt.stats")


def test_the_granted_broker_is_used_unless_another_address_is_given(tmp_path: Path) -> None:
    def aimed(bus: str) -> str:
        transport = ManagedAgentTransport(NodeIdentity(tmp_path), AgentServerSettings(),
                                          broker=bus)
        return transport._aimed(_account()).url

    user = f"overt-node-{HOST}"
    assert aimed("amqp") == _account().url
    assert aimed("amqp://10.77.0.1") == f"amqp://{user}:pw%2F1@10.77.0.1/overt"
    assert aimed("amqps://broker.lab:5671") == f"amqps://{user}:pw%2F1@broker.lab:5671/overt"


def test_the_server_of_a_managed_node_serves_enrollment_only(tmp_path: Path) -> None:
    transport = ManagedAgentTransport(NodeIdentity(tmp_path), AgentServerSettings(port=1234))
    assert transport.enrollment.settings.port == 1234
    assert not transport.enrollment.settings.commands_and_events
