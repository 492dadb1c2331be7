"""Fencing a host (oVirt's host `fence`): its power management agents, tried in order, run
the action through the real fence agent; the job's result is the power status after it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from overt.engine import audit, fencing
from overt.engine.db.tables import FenceAgent, Host
from overt.engine.jobs.context import JobContext, Unit
from overt.engine.jobs.errors import JobFailed
from overt.engine.jobs.kinds import FenceHost, JobSpec
from overt.engine.model.status import LogSeverity
from overt.engine.queries import lookup


async def fence_host(ctx: JobContext, spec: FenceHost) -> dict[str, Any]:
    host_id, fence_type = spec.host_id, spec.fence_type
    box = ctx.services.secret_box()
    async with ctx.transaction() as session:
        host = await lookup.get(session, Host, host_id)
        rows = list((await session.execute(select(FenceAgent).where(
            FenceAgent.host_id == host_id).order_by(FenceAgent.order))).scalars())
    if not rows:
        raise JobFailed(f"Host {host.name} has no power management agent")
    reasons: list[str] = []
    for row in rows:
        try:
            agent = fencing.AgentSpec(type=row.type, address=row.address, port=row.port,
                                      username=row.username, password=box.open(row.password_sealed),
                                      options={k: str(v) for k, v in row.options.items()})
        except ValueError as e:
            reasons.append(f"agent {row.address}: its password cannot be read ({e})")
            continue
        try:
            status = await _run(ctx, host.name, agent, fence_type)
        except fencing.FenceError as e:
            reasons.append(str(e))
            continue
        async with ctx.transaction() as session:
            audit.record(session, f"Host {host.name}: power management {fence_type} through "
                         f"{row.type} at {row.address} succeeded (power {status})",
                         code=audit.HOST_FENCED, host_id=host_id, job_id=ctx.job.id)
        return {"status": status}
    reason = "; ".join(reasons)
    async with ctx.transaction() as session:
        audit.record(session, f"Host {host.name}: power management {fence_type} failed: {reason}",
                     code=audit.HOST_FENCE_FAILED, severity=LogSeverity.ERROR, host_id=host_id,
                     job_id=ctx.job.id)
    raise JobFailed(f"Cannot {fence_type} host {host.name}: {reason}")


async def _run(ctx: JobContext, host_name: str, agent: fencing.AgentSpec, fence_type: str) -> str:
    """The action, then the power status the BMC reports after it."""
    action = fencing.ACTIONS[fence_type]
    if action != "status":
        async with ctx.step(f"Power management {fence_type} of host {host_name} through "
                            f"{agent.type} at {agent.address}"):
            await ctx.services.fence_agent(agent, action)
    async with ctx.step(f"Power status of host {host_name} through {agent.type} at "
                        f"{agent.address}"):
        status: str = await ctx.services.fence_agent(agent, "status")
        return status


UNITS: dict[type[JobSpec], Unit[Any]] = {FenceHost: Unit(fence_host)}
