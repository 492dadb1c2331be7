"""What a host reported about itself: refreshing its capabilities, and its network interfaces."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Host, Job, User
from overt.engine.jobs.kinds import RefreshHost
from overt.engine.model.host_actions import HostAction, check_host_action
from overt.engine.queries import lookup
from overt.engine.services.jobs import JobSubmitter


@dataclass(frozen=True)
class HostNic:
    """One network interface as the node reported it (ids are stable per host and name)."""

    id: uuid.UUID
    name: str
    mac: str | None
    addresses: tuple[str, ...]
    bridged: bool
    speed_mbps: int | None
    mtu: int | None = None


async def refresh_host(session: AsyncSession, jobs: JobSubmitter, host_id: uuid.UUID,
                       user: User) -> Job:
    """Ask the node for its capabilities again (oVirt's host `refresh`), as a job."""
    host = await lookup.get(session, Host, host_id)
    check_host_action(HostAction.REFRESH, host.status, host_name=host.name)
    return await jobs.submit(session, RefreshHost(host_id=host.id),
                             description=f"Refreshing the capabilities of host {host.name}",
                             owner_id=user.id)


def host_nics(host: Host) -> list[HostNic]:
    reported = (host.capabilities or {}).get("nics") or []
    return [HostNic(id=uuid.uuid5(host.id, str(nic.get("name"))), name=str(nic.get("name")),
                    mac=nic.get("mac"), addresses=tuple(nic.get("addresses") or ()),
                    bridged=bool(nic.get("bridge")), speed_mbps=nic.get("speed_mbps"),
                    mtu=nic.get("mtu"))
            for nic in reported if nic.get("name")]
