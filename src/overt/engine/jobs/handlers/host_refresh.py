"""Refreshing a host's capabilities (oVirt's host `refresh`): the node reports them again."""

from __future__ import annotations

from typing import Any

from overt.engine import audit
from overt.engine.db.tables import Host
from overt.engine.jobs.context import JobContext, Unit
from overt.engine.jobs.kinds import JobSpec, RefreshHost
from overt.engine.queries import lookup
from overt.protocol.commands import HostCapabilitiesCommand
from overt.protocol.host import HostCapabilities


async def refresh_host(ctx: JobContext, spec: RefreshHost) -> dict[str, Any]:
    host_id = spec.host_id
    async with ctx.transaction() as session:
        host = await lookup.get(session, Host, host_id)
    async with ctx.step(f"Asking host {host.name} for its capabilities", host_id=host.id):
        caps = await ctx.nodes.call(host, HostCapabilitiesCommand(), HostCapabilities,
                                    key=ctx.key("capabilities"))
    async with ctx.transaction() as session:
        host = await lookup.get(session, Host, host_id, for_update=True)
        host.capabilities = caps.model_dump(mode="json")
        host.kdump_status = caps.kdump_status
        host.memory_mib = caps.memory_mib
        host.needs_resync = True  # and its networks as it carries them now
        audit.record(session, f"Host {host.name}'s capabilities were refreshed",
                     code=audit.HOST_REFRESHED, host_id=host.id, job_id=ctx.job.id)
    return {"nics": len(caps.nics), "memory_mib": caps.memory_mib}


UNITS: dict[type[JobSpec], Unit[Any]] = {RefreshHost: Unit(refresh_host)}
