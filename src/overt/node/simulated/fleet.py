"""A fleet of SIMULATED nodes in one process, for scale benchmarks and tests.

Each node is a real agent (protocol, idempotency, event sequencing, transport) on a
`SimulatedHypervisor`, with an identity of its own: its own data directory (key,
certificate, broker account), its own host UUID, and it enrolls through the
engine's gateway like any node. This module is the composition root of those
agents, as `overt.node.composition` is of the real one.

Node and VM ids derive from the fleet's `seed` and the node's index, so that a
benchmark can prepare the VMs a node will report, and a fleet restarted on the same
data directory comes back as the same nodes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overt.bus.base import AgentTransport
from overt.bus.direct.agent import AgentServerSettings, DirectAgentTransport
from overt.clock import Clock
from overt.node.agent import Agent, AgentTimings
from overt.node.idempotency import IdempotencyStore
from overt.node.identity import NodeIdentity
from overt.node.managed import ManagedAgentTransport
from overt.node.simulated.hypervisor import SimulatedHypervisor, SimulatedTimings
from overt.node.storage.local import LocalVolumes

log = logging.getLogger(__name__)

_NAMESPACE = uuid.UUID("5e0b4d4e-3d0c-4b6e-9a43-6f7665727421")
STARTS_PER_SECOND = 50  # nodes started a second: no stampede on the gateway and broker


def node_uuid(seed: str, index: int) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{seed}/node/{index}")


def node_name(seed: str, index: int) -> str:
    return f"{seed}-{index:04d}"


def vm_uuid(seed: str, index: int, number: int) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{seed}/node/{index}/vm/{number}")


def vm_name(seed: str, index: int, number: int) -> str:
    return f"{seed}-{index:04d}-vm{number:02d}"


@dataclass(frozen=True)
class FleetSpec:
    """Nodes `first` .. `first + count - 1` of fleet `seed`."""

    engine_url: str
    data_dir: Path
    count: int
    first: int = 0
    seed: str = "sim"
    bus: str = "amqp"
    engine_ca_file: Path | None = None
    vms_per_node: int = 0  # VMs each node already runs when it starts
    vm_memory_mib: int = 64
    node_memory_mib: int = 262_144
    timings: AgentTimings = field(default_factory=AgentTimings)
    simulated: SimulatedTimings = field(default_factory=SimulatedTimings)
    announce_interval_s: float = 5.0
    cert_check_interval_s: float = 3600.0
    clock: Clock | None = None  # the nodes' time for certificates (tests move it ahead)

    @property
    def indexes(self) -> range:
        return range(self.first, self.first + self.count)


@dataclass
class _Node:
    index: int
    agent: Agent
    transport: AgentTransport


class SimulatedFleet:
    """Starts, runs and stops the nodes of `spec`."""

    def __init__(self, spec: FleetSpec) -> None:
        self.spec = spec
        self.nodes: list[_Node] = []

    async def start(self) -> None:
        for index in self.spec.indexes:
            node = self._build(index)
            await node.agent.start()
            self.nodes.append(node)
            if len(self.nodes) % STARTS_PER_SECOND == 0:
                log.info("%d simulated node(s) started", len(self.nodes))
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        await asyncio.gather(*(node.agent.stop() for node in self.nodes),
                             return_exceptions=True)

    def status(self) -> dict[str, dict[str, Any]]:
        """Per node: its run (boot id) and how many events it sent and got confirmed."""
        result = {}
        for node in self.nodes:
            sequencer = node.agent.sequencer
            if sequencer is None:
                continue
            unconfirmed = 0
            if isinstance(node.transport, ManagedAgentTransport):
                bus = node.transport.bus
                unconfirmed = bus.unconfirmed if bus is not None else sequencer.last_seq
            result[str(sequencer.host_uuid)] = {
                "name": node_name(self.spec.seed, node.index),
                "boot_id": str(sequencer.boot_id), "sent": sequencer.last_seq,
                "confirmed": sequencer.last_seq - unconfirmed}
        return result

    def write_status(self, path: Path) -> None:
        path.write_text(json.dumps(self.status(), indent=1))

    def _build(self, index: int) -> _Node:
        spec = self.spec
        home = spec.data_dir / node_name(spec.seed, index)
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        running = [(vm_uuid(spec.seed, index, n), vm_name(spec.seed, index, n),
                    spec.vm_memory_mib) for n in range(spec.vms_per_node)]
        hypervisor = SimulatedHypervisor(
            node_uuid(spec.seed, index), hostname=node_name(spec.seed, index),
            memory_mib=spec.node_memory_mib, running=running, timings=spec.simulated)
        server = AgentServerSettings(listen_address="127.0.0.1", port=0,
                                     engine_url=spec.engine_url, advertise_address="127.0.0.1",
                                     announce_interval_s=spec.announce_interval_s,
                                     cert_check_interval_s=spec.cert_check_interval_s)
        identity = NodeIdentity(home / "node", spec.engine_ca_file, clock=spec.clock)
        transport: AgentTransport = (
            DirectAgentTransport(identity, server) if spec.bus == "direct"
            else ManagedAgentTransport(identity, server, broker=spec.bus))
        agent = Agent(hypervisor=hypervisor, volumes=LocalVolumes(home / "images"),
                      idempotency=IdempotencyStore(home / "node" / "command-results.sqlite"),
                      transport=transport, timings=spec.timings)
        return _Node(index, agent, transport)
