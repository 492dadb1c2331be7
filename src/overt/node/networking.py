"""The seam between the agent and whatever makes its host's networks real: Open vSwitch
and Linux bridges on a real node (`node.networks`), a table in memory on a simulated one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from overt.protocol.host import ReportedBond, ReportedNetwork
from overt.protocol.networks import BondWiring, NetworkSetup, NetworkWiring


class HostNetworking(Protocol):
    async def setup(self, wanted: Sequence[NetworkWiring],
                    rollback_after_s: float | None,
                    bonds: Sequence[BondWiring] = ()) -> NetworkSetup:
        """Carry exactly `wanted` (undone by itself after `rollback_after_s` unless
        committed)."""
        ...

    async def commit(self) -> NetworkSetup:
        """Keep the networks as they are now."""
        ...

    async def report(self) -> tuple[ReportedNetwork, ...]:
        """The networks as the host really carries them now (read back, not remembered)."""
        ...

    async def report_bonds(self) -> tuple[ReportedBond, ...]:
        """The bonds on the host's switch now, whoever made them."""
        ...

    async def close(self) -> None:
        ...
