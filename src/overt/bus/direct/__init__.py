"""The direct transport: HTTPS with mutual TLS between engine and nodes, no broker.

- `overt.bus.direct.engine.DirectEngineTransport`: the engine calls a node's RPC server.
- `overt.bus.direct.gateway.NodeGateway`: the engine's node gateway (events, enrollment).
- `overt.bus.direct.agent.DirectAgentTransport`: a node's RPC server and event delivery.
"""
