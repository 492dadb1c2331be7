"""The AMQP transport (fully managed mode): engine and nodes through RabbitMQ.

- `AmqpEngineTransport`: the engine's end (commands out, replies and events in).
- `AmqpAgentTransport`: a node's end, built from the `BrokerCredentials` of its enrollment.
- `BrokerAdmin`: the engine's hand on nodes' broker accounts (management API).

Topology, permissions and ordering guarantees are described in docs/broker.md.
"""

from overt.bus.amqp.admin import BrokerAdmin, BrokerAdminError
from overt.bus.amqp.agent import AmqpAgentTransport
from overt.bus.amqp.engine import AmqpEngineTransport
from overt.bus.amqp.link import Backoff

__all__ = [
    "AmqpAgentTransport",
    "AmqpEngineTransport",
    "Backoff",
    "BrokerAdmin",
    "BrokerAdminError",
]
