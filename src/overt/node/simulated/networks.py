"""SIMULATED host networks, for the fast test lane and benchmarks: the networks a node was
asked to carry are rows in memory, realised exactly as asked, until a test changes them
behind the agent's back (`drift`, `lose`), as an administrator on the host might."""

from __future__ import annotations

from collections.abc import Sequence

from overt.node.errors import NodeFailure
from overt.protocol.errors import ErrorCode
from overt.protocol.host import ReportedBond, ReportedBondSlave, ReportedNetwork
from overt.protocol.networks import BondWiring, NetworkSetup, NetworkWiring

_DEFAULT_MTU = 1500


class SimulatedHostNetworks:
    """The networks of one simulated host, by name."""

    def __init__(self) -> None:
        self.carried: dict[str, ReportedNetwork] = {}
        self.wirings: dict[str, NetworkWiring] = {}  # as last asked (an overlay's tunnels)
        self.bonds: dict[str, ReportedBond] = {}
        # A network whose setup cuts the host off from the engine (a test sets it): with the
        # connectivity check the change is undone at once and its confirmation fails.
        self.cuts_off: str | None = None
        self._rolled_back = False

    async def setup(self, wanted: Sequence[NetworkWiring],
                    rollback_after_s: float | None,
                    bonds: Sequence[BondWiring] = ()) -> NetworkSetup:
        self._rolled_back = False
        if rollback_after_s is not None and self.cuts_off in {w.name for w in wanted}:
            self._rolled_back = True
            return NetworkSetup(carried=tuple(sorted(self.carried)))
        removed = sorted(set(self.carried) - {w.name for w in wanted})
        self.carried = {w.name: ReportedNetwork(
            name=w.name, bridge=w.bridge, nic=w.nic, vlan=w.vlan, mtu=w.mtu or _DEFAULT_MTU,
            addresses=(w.address,) if w.boot_protocol == "static" and w.address else ())
            for w in wanted}
        self.wirings = {w.name: w for w in wanted}
        self.bonds = {b.name: self.bonds[b.name] if b.name in self.bonds and _same(
            self.bonds[b.name], b) else ReportedBond(
            name=b.name, mode=b.mode, lacp="configured" if b.lacp != "off" else "off",
            slaves=tuple(ReportedBondSlave(name=s, link_up=True) for s in sorted(b.slaves)),
            active_slave=sorted(b.slaves)[0] if b.mode == "active-backup" else None)
            for b in bonds}
        return NetworkSetup(carried=tuple(sorted(self.carried)), removed=tuple(removed))

    async def commit(self) -> NetworkSetup:
        if self._rolled_back:
            raise NodeFailure(ErrorCode.INVALID_STATE, "the host's network change was rolled "
                              "back: the engine did not confirm it in time")
        return NetworkSetup(carried=tuple(sorted(self.carried)))

    async def report(self) -> tuple[ReportedNetwork, ...]:
        return tuple(self.carried[name] for name in sorted(self.carried))

    async def report_bonds(self) -> tuple[ReportedBond, ...]:
        return tuple(self.bonds[name] for name in sorted(self.bonds))

    async def close(self) -> None:
        return None

    def link_down(self, slave: str) -> None:
        """A bond slave loses its carrier: an active-backup bond fails over to another."""
        for name, bond in self.bonds.items():
            if slave not in {s.name for s in bond.slaves}:
                continue
            slaves = tuple(s.model_copy(update={"link_up": False}) if s.name == slave else s
                           for s in bond.slaves)
            active = bond.active_slave
            if active == slave:
                active = next((s.name for s in slaves if s.link_up), None)
            self.bonds[name] = bond.model_copy(update={"slaves": slaves,
                                                       "active_slave": active})

    def add_bond(self, bond: ReportedBond) -> None:
        """A bond made on the host behind the engine's back."""
        self.bonds[bond.name] = bond

    def drift(self, name: str, **changes: object) -> None:
        """Change how network `name` is realised (vlan, mtu, addresses) without the engine."""
        self.carried[name] = self.carried[name].model_copy(update=changes)

    def lose(self, name: str) -> None:
        """The network's bridge is gone from the host."""
        self.carried.pop(name, None)


def _same(reported: ReportedBond, wanted: BondWiring) -> bool:
    return (reported.mode == wanted.mode
            and {s.name for s in reported.slaves} == set(wanted.slaves))
