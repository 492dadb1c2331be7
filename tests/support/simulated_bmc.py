"""BMCs for the fast lane's simulated nodes: what `JobServices.fence_agent` runs instead of
the real `fence_ipmilan` (tests of the real agent run in the lab, against its virtual BMCs).

Each BMC is known by the address its host's fence agent names. `off` (and `reboot`'s off)
powers the node off: its hypervisor loses every VM and its agent stops. `reboot` leaves the
machine on but its agent not yet started (a booting node). `broken` BMCs fail every action
the way an unreachable one does."""

from __future__ import annotations

from dataclasses import dataclass, field

from overt.engine.fencing import AgentSpec, FenceError
from tests.support.loopback import LoopbackEngine


@dataclass
class SimulatedBmcs:
    engine: LoopbackEngine
    nodes: dict[str, str] = field(default_factory=dict)  # BMC address -> node name
    power: dict[str, str] = field(default_factory=dict)  # node name -> "on" / "off"
    broken: set[str] = field(default_factory=set)  # node names whose BMC does not answer
    actions: list[tuple[str, str]] = field(default_factory=list)  # (node, action) asked

    def add(self, node: str, address: str) -> None:
        self.nodes[address] = node
        self.power[node] = "on"

    async def power_off(self, node: str) -> None:
        """The node loses its power (outside the engine)."""
        self.engine.hosts[node].hypervisor.power_off()
        await self.engine.hosts[node].agent.stop()
        self.power[node] = "off"

    async def __call__(self, agent: AgentSpec, action: str) -> str:
        node = self.nodes[agent.address]
        self.actions.append((node, action))
        if node in self.broken:
            raise FenceError(f"fence_ipmilan {action} at {agent.address} failed: Unable to "
                             "connect/login to fencing device")
        if action == "status":
            return self.power[node]
        if self.power[node] == "on":
            await self.power_off(node)
        if action in ("on", "reboot"):
            self.power[node] = "on"
        return "ok"
