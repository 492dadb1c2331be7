"""A host that stopped sending heartbeats, judged as oVirt does: `connecting` first, for a
grace period that grows with the VMs it runs (`model.fencing_policy.grace_period_s`), then
`non_responsive`, its VMs `unknown`, and a `RecoverHost` job that fences it and restarts its
highly available VMs elsewhere once their copies are proven gone.

A host heard again within its grace is simply up (`reconcile.mark_host_up`): the blip
costs nothing. A host connecting after enrollment or activation (never heard since) has
no grace and is not recovered: it served nothing.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Cluster, Host, Job, Vm
from overt.engine.jobs import queue
from overt.engine.jobs.kinds import RecoverHost
from overt.engine.model.fencing_policy import FencingPolicy, grace_period_s
from overt.engine.model.host_actions import HOST_ACTIONS, HostAction, status_after
from overt.engine.model.node_states import ON_HOST
from overt.engine.model.status import HostStatus, LogSeverity, VmStatus

log = logging.getLogger(__name__)

# Hosts that serve VMs: silent, they get a grace period before they are judged lost.
SERVING = HOST_ACTIONS[HostAction.MISS].allowed


async def _running_vms(session: AsyncSession, host: Host) -> int:
    return int((await session.execute(select(func.count()).select_from(Vm).where(
        Vm.host_id == host.id, Vm.status.in_(ON_HOST)))).scalar_one())


async def judge_silent_host(session: AsyncSession, host: Host, *, now: dt.datetime,
                            heartbeat_timeout: dt.timedelta,
                            defaults: FencingPolicy | None = None) -> None:
    """`host` (its row locked) sent no heartbeat for longer than `heartbeat_timeout`."""
    silent_s = int(heartbeat_timeout.total_seconds())
    if host.status in SERVING:
        log.warning("host %s sent no heartbeat for %s: connecting", host.name,
                    heartbeat_timeout,
                    extra={"host": host.name})
        host.status, host.unreachable_since = status_after(HostAction.MISS), now
        host.status_detail = f"no heartbeat for {silent_s} s"
        audit.record(session, f"Host {host.name} is not responding; the engine keeps trying "
                     "to reach it during its grace period before judging it non responsive",
                     code=audit.HOST_CONNECTING, severity=LogSeverity.WARNING,
                     host_id=host.id, cluster_id=host.cluster_id)
        return
    in_grace = host.status == HostStatus.CONNECTING and host.unreachable_since is not None
    grace_s = 0.0
    if in_grace:
        assert host.unreachable_since is not None
        cluster = await session.get(Cluster, host.cluster_id)
        policy = FencingPolicy.from_json(cluster.fencing_policy if cluster else None,
                                         defaults)
        grace_s = grace_period_s(policy, await _running_vms(session, host))
        if (now - host.unreachable_since).total_seconds() < grace_s:
            return
    # A host lost while it drained still ran VMs: recovered too (its drain fails).
    draining = host.status == HostStatus.PREPARING_FOR_MAINTENANCE
    await _lose(session, host, silent_s, grace_s, recover=in_grace or draining)


async def _lose(session: AsyncSession, host: Host, silent_s: int, grace_s: float, *,
                recover: bool) -> None:
    log.warning("host %s: non responsive", host.name, extra={"host": host.name})
    host.status, host.unreachable_since = status_after(HostAction.LOSE), None
    host.status_detail = f"no heartbeat for {silent_s} s" + (
        f", nor during its grace period of {grace_s:.0f} s" if recover else "")
    audit.record(session, f"Host {host.name} is not responding" + (
        f" after its grace period of {grace_s:.0f} s" if recover else ""),
        code=audit.HOST_NON_RESPONSIVE, severity=LogSeverity.ERROR, host_id=host.id,
        cluster_id=host.cluster_id)
    await session.execute(
        update(Vm).where(Vm.host_id == host.id, Vm.status.in_(ON_HOST))
        .values(status=VmStatus.UNKNOWN).execution_options(synchronize_session=False))
    if recover and not await _recovering(session, host):
        await queue.submit(session, RecoverHost(host_id=host.id),
                           description=f"Handling non responsive host {host.name}")


async def _recovering(session: AsyncSession, host: Host) -> bool:
    return (await session.execute(select(Job.id).where(
        Job.action == RecoverHost.kind, Job.host_id == host.id,
        Job.state.in_(("queued", "running"))))).first() is not None
