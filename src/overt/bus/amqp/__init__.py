"""The AMQP transport (fully managed mode): engine and nodes through RabbitMQ.

- `engine.AmqpEngineTransport`: the engine's end (commands out, replies and events in).
- `agent.AmqpAgentTransport`: a node's end, built from the `BrokerCredentials` of its enrollment.
- `admin.BrokerAdmin`: the engine's hand on nodes' broker accounts (management API).

Topology, permissions and ordering guarantees are described in docs/broker.md. Import
from the modules (`overt.bus.amqp.engine`, `.agent`, `.admin`): this package imports
nothing, so its small parts (`url`) load without the transports.
"""
