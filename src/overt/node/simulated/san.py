"""A simulated iSCSI SAN for simulated nodes: portals, their targets (with CHAP or not)
and each target's LUNs, answering the node's discovery and LUN list as libiscsi would."""

from __future__ import annotations

from dataclasses import dataclass, field

from overt.node.errors import NodeFailure
from overt.protocol import ErrorCode
from overt.protocol.storage import (
    DiscoveredTarget,
    DiscoveredTargets,
    IscsiDiscover,
    IscsiLunInfo,
    IscsiLunList,
    IscsiLuns,
)
from overt.protocol.vm import ChapAuth


@dataclass
class SimulatedTarget:
    iqn: str
    luns: list[IscsiLunInfo] = field(default_factory=list)
    chap: ChapAuth | None = None  # what the target asks of its initiators


@dataclass
class SimulatedSan:
    """Targets by portal ("ADDRESS:PORT"); `asked` records each command, for tests."""

    portals: dict[str, list[SimulatedTarget]] = field(default_factory=dict)
    asked: list[IscsiDiscover | IscsiLunList] = field(default_factory=list)

    def add(self, portal: str, target: SimulatedTarget) -> SimulatedTarget:
        self.portals.setdefault(portal if ":" in portal else f"{portal}:3260",
                                []).append(target)
        return target

    async def __call__(self, command: IscsiDiscover | IscsiLunList
                       ) -> DiscoveredTargets | IscsiLuns:
        self.asked.append(command)
        portal = command.portal if ":" in command.portal else f"{command.portal}:3260"
        targets = self.portals.get(portal)
        if targets is None:
            raise NodeFailure(ErrorCode.BAD_REQUEST, f"no iSCSI portal answers at {portal}")
        address, _, port = portal.rpartition(":")
        if isinstance(command, IscsiDiscover):
            return DiscoveredTargets(targets=[
                DiscoveredTarget(target=t.iqn, address=address, port=int(port),
                                 portal=f"{portal},1") for t in targets])
        target = next((t for t in targets if t.iqn == command.target), None)
        action = f"listing the LUNs of {command.target} on {command.portal} failed"
        if target is None:
            raise NodeFailure(ErrorCode.BAD_REQUEST, f"{action}: Failed to log in to target. "
                              "Status: Target not found(515)")
        if target.chap is not None and target.chap != command.chap:
            raise NodeFailure(ErrorCode.BAD_REQUEST, f"{action}: the iSCSI target refused "
                              "the login (check the CHAP user name and password): Failed to "
                              "log in to target. Status: Authentication failure(513)")
        return IscsiLuns(luns=list(target.luns))
