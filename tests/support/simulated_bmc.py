"""BMCs for the fast lane's simulated nodes: what `JobServices.fence_agent` runs instead of
the real `fence_ipmilan` (tests of the real agent run in the lab, against its virtual BMCs).

Each BMC is known by the address its host's fence agent names. `off` (and `reboot`'s off)
powers the node off: its hypervisor loses every VM and its agent stops. `reboot` leaves the
machine on but its agent not yet started (a booting node), unless the node `boots`: then its
agent starts again and the BMC answers once the engine has it `up` (a node that boots
faster than the fence agent returns, as the lab's nodes do). `broken` BMCs fail every
action the way an unreachable one does."""

from __future__ import annotations

from dataclasses import dataclass, field

from overt.engine.db.tables import Host
from overt.engine.fencing import AgentSpec, FenceError
from overt.engine.model.status import HostStatus
from tests.support.loopback import LoopbackEngine


@dataclass
class SimulatedBmcs:
    engine: LoopbackEngine
    nodes: dict[str, str] = field(default_factory=dict)  # BMC address -> node name
    power: dict[str, str] = field(default_factory=dict)  # node name -> "on" / "off"
    broken: set[str] = field(default_factory=set)  # node names whose BMC does not answer
    boots: set[str] = field(default_factory=set)  # node names whose agent starts at power on
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
            if node in self.boots:
                await self._booted(node)
        return "ok"

    async def _booted(self, node: str) -> None:
        await self.engine.restart_agent(node)
        host_id = self.engine.hosts[node].host_id

        async def up() -> bool:
            async with self.engine.session() as session:
                host = await session.get(Host, host_id, populate_existing=True)
                return host is not None and host.status == HostStatus.UP
        await self.engine.eventually(up, what=f"host {node} to be up after its power on")
