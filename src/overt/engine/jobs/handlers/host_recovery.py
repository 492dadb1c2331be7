"""A non responsive host (oVirt's `VdsNotRespondingTreatment`): fence it when its cluster's
fencing policy allows, then act on its VMs only with proof their copies are gone.

1. The verdict (`model.fencing_policy.fence_verdict`): the policy, the host's power
   management, the share of its cluster that is unreachable, its storage activity.
   Kdump detection (`kdump_detection`): before a fence, a short wait for the host's
   fence_kdump messages, when every VM on it has a lease that can prove it gone; a host
   that sends them crashed: it is kdumping, not fenced, and its VMs are down once their
   leases expire (a message alone is no proof: it is unauthenticated UDP).
2. Fencing: a power management restart, run as a `FenceHost` job of its own (the same
   job an administrator's fence runs), waited for.
3. Proofs (`ha_proofs`): VMs proven gone are `down` (not shut down gracefully: each
   event says why), and the highly available ones among them are started again, highest
   priority first, each placed by the scheduler as a user's start is (affinity, pinning,
   memory); a VM no host can take gets an event saying why. VMs without proof stay
   `unknown` and nothing is restarted: a VM must never run twice. A VM whose lease was
   reported held is waited for until its lease has expired (never restarted before).
Every decision is an event that says why.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Cluster, FenceAgent, Host, Job, Vm, utcnow
from overt.engine.jobs import queue
from overt.engine.jobs.context import JobContext, Unit
from overt.engine.jobs.handlers.ha_proofs import (
    FenceOutcome,
    Proven,
    as_result,
    lease_expired,
    lease_waits,
    prove_gone,
)
from overt.engine.jobs.handlers.kdump_detection import Kdump, detect, wait_until_finished
from overt.engine.jobs.kinds import FenceHost, JobSpec, RecoverHost, StartVm
from overt.engine.model.errors import Conflict
from overt.engine.model.fencing_policy import FencingPolicy, Liveness, fence_verdict
from overt.engine.model.host_actions import MONITORED
from overt.engine.model.node_states import ON_HOST
from overt.engine.model.status import HostStatus, LogSeverity, VmStatus
from overt.engine.queries import host_renews_storage_lease, lookup
from overt.engine.queries.vm_spec import required_host
from overt.engine.scheduler.loads import reserve_host

_POLL_S = 0.1
FENCE_WAIT_S = 300.0  # the agent's own timeout (120 s) for the action and the status after
LEASE_POLL_S = 0.5  # re-reading whether a waited-for lease has expired
LEASE_WAIT_SLACK_S = 5.0  # past the expected expiry, for the clock's rounding


async def storage_lease_liveness(session: AsyncSession, host: Host) -> Liveness:
    """Whether the host still renews its id lease on shared storage (oVirt's
    skip_if_sd_active), as its lease keeper last reported; UNKNOWN when it reported none."""
    renews = await host_renews_storage_lease(session, host.id)
    if renews is None:
        return Liveness.UNKNOWN
    return Liveness.ACTIVE if renews else Liveness.INACTIVE


async def _power_management(session: AsyncSession, host: Host) -> bool:
    agents = int((await session.execute(select(func.count()).select_from(FenceAgent).where(
        FenceAgent.host_id == host.id))).scalar_one())
    return host.pm_enabled and agents > 0


async def _reachability(session: AsyncSession, cluster_id: uuid.UUID) -> tuple[int, int]:
    """(monitored hosts of the cluster, those of them unreachable now)."""
    statuses = list((await session.execute(select(Host.status).where(
        Host.cluster_id == cluster_id, Host.status.in_(MONITORED)))).scalars())
    lost = sum(1 for s in statuses if s in (HostStatus.NON_RESPONSIVE, HostStatus.CONNECTING))
    return len(statuses), lost


async def recover_host(ctx: JobContext, spec: RecoverHost) -> dict[str, Any]:
    async with ctx.transaction() as session:
        host = await lookup.get(session, Host, spec.host_id)
    if host.status == HostStatus.KDUMPING:  # run again (the engine restarted meanwhile)
        async with ctx.transaction() as session:  # those not handled yet
            vm_ids = [vm.id for vm in await _vms_on(session, host.id)]
        return await _kdumping(ctx, host, vm_ids)
    async with ctx.transaction() as session:
        host = await lookup.get(session, Host, spec.host_id)
        if host.status != HostStatus.NON_RESPONSIVE:
            return {"outcome": f"host is {host.status}"}  # it answered again meanwhile
        cluster = await lookup.get(session, Cluster, host.cluster_id)
        policy = FencingPolicy.from_json(cluster.fencing_policy)
        has_pm = await _power_management(session, host)
        hosts, lost = await _reachability(session, host.cluster_id)
        verdict = fence_verdict(policy, host_name=host.name, power_management=has_pm,
                                cluster_hosts=hosts, unreachable_hosts=lost,
                                storage=await storage_lease_liveness(session, host))
        if not verdict.fence:
            audit.record(session, f"Host {host.name} is not fenced: {verdict.reason}",
                         code=audit.HOST_FENCING_SKIPPED, severity=LogSeverity.WARNING,
                         host_id=host.id, cluster_id=host.cluster_id, job_id=ctx.job.id)
        # Read before fencing: a restarted node's agent can answer before the fence job
        # ends, and the monitor then records these VMs down (gone from the host), which
        # would hide them from the restart below.
        vm_ids = [vm.id for vm in await _vms_on(session, host.id)]
    outcome = FenceOutcome()
    if verdict.fence:
        kdump = await detect(ctx, host, await _unleased(ctx, vm_ids))
        if kdump is Kdump.ANSWERED:
            return {"outcome": "host answered again"}
        if kdump is Kdump.DETECTED:
            return await _kdumping(ctx, host, vm_ids)
        async with ctx.step(f"Fencing non responsive host {host.name} (power management "
                            "restart)", host_id=host.id):
            outcome = await _fence(ctx, host, "restart")

    async def power_status() -> str | None:
        if not has_pm:
            return None
        return (await _fence(ctx, host, "status")).power

    async with ctx.step(f"Looking for proof that the VMs of host {host.name} are gone",
                        host_id=host.id):
        proven = await prove_gone(ctx, host, outcome, vm_ids, power_status)
    if not await _wait_for_leases(ctx, host, [v for v in vm_ids if v not in proven], proven):
        return {**as_result(outcome), "outcome": "host answered again"}
    await _leave_unknown(ctx, host, [v for v in vm_ids if v not in proven], verdict.reason
                         if not verdict.fence else outcome.error or "no proof was found")
    restart = await _mark_down(ctx, host, proven)
    restarted, refused = await _restart(ctx, host, restart)
    return {**as_result(outcome), "proven": len(proven), "unknown": len(vm_ids) - len(proven),
            "restarted": restarted, "not_restarted": refused}


async def _unleased(ctx: JobContext, vm_ids: list[uuid.UUID]) -> list[str]:
    """The names of the VMs no lease will prove gone (none, or never reported held)."""
    waits = await lease_waits(ctx, vm_ids)
    async with ctx.transaction() as session:
        return [(await lookup.get(session, Vm, vm_id)).name
                for vm_id in vm_ids if vm_id not in waits]


async def _kdumping(ctx: JobContext, host: Host, vm_ids: list[uuid.UUID]) -> dict[str, Any]:
    """A host dumping its crashed kernel's memory is not fenced (that would cut the dump
    short). Its messages are no proof on their own: each VM is down once its lease has
    expired (the highly available ones restarted then), as after a failed fence; then the
    dump is waited for."""
    proven: Proven = {}
    if not await _wait_for_leases(ctx, host, vm_ids, proven):
        return {"kdump": "interrupted", "outcome": "host answered again"}
    await _leave_unknown(ctx, host, [v for v in vm_ids if v not in proven],
                         "it is kdumping and their leases did not expire")
    restart = await _mark_down(ctx, host, proven)
    restarted, refused = await _restart(ctx, host, restart)
    finished = await wait_until_finished(ctx, host)
    return {**as_result(FenceOutcome()), "kdump": "finished" if finished else "interrupted",
            "proven": len(proven), "unknown": len(vm_ids) - len(proven),
            "restarted": restarted, "not_restarted": refused}


async def _wait_for_leases(ctx: JobContext, host: Host, unproven: list[uuid.UUID],
                           proven: Proven) -> bool:
    """VMs no proof covers yet but whose lease will expire (its holder was reported): wait
    until it has, then take the lease proof (never before: the copy may still run until
    its keeper stops it). False when the host answered again meanwhile (a kdumping host's
    dump ending is not an answer)."""
    waits = await lease_waits(ctx, unproven)
    if not waits:
        return True
    async with ctx.transaction() as session:
        vms = [await lookup.get(session, Vm, vm_id) for vm_id in waits]
    names = ", ".join(sorted(vm.name for vm in vms))
    longest = max(waits.values())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + longest + LEASE_WAIT_SLACK_S
    async with ctx.step(f"Waiting up to {math.ceil(longest)} s for the leases of VM(s) {names} of "
                        f"host {host.name} to expire", host_id=host.id):
        while True:
            async with ctx.transaction() as session:
                current = await lookup.get(session, Host, host.id)
                if current.status not in (HostStatus.NON_RESPONSIVE, HostStatus.KDUMPING):
                    return False
            found = await lease_expired(ctx, host, FenceOutcome(), list(waits))
            for vm_id, why in found.items():
                proven.setdefault(vm_id, why)
            if len(found) == len(waits) or loop.time() > deadline:
                return True
            await asyncio.sleep(LEASE_POLL_S)


async def _fence(ctx: JobContext, host: Host,
                 fence_type: Literal["status", "restart"]) -> FenceOutcome:
    """Run a `FenceHost` job and wait for its end."""
    spec = FenceHost(host_id=host.id, fence_type=fence_type)
    description = f"Power management {fence_type} of non responsive host {host.name}"
    async with ctx.transaction() as session:
        submitter = ctx.services.jobs
        job = await (submitter.submit if submitter is not None else _queue_submit)(
            session, spec, description=description, correlation_id=ctx.job.correlation_id)
        job_id = job.id
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FENCE_WAIT_S
    while True:
        async with ctx.transaction() as session:
            job = await session.get(Job, job_id, populate_existing=True)
        if job is None:
            return FenceOutcome(fence_type, error=f"its job {job_id} is gone")
        if job.state == "done":
            return FenceOutcome(fence_type, True, (job.result or {}).get("status"))
        if job.state == "failed":
            return FenceOutcome(fence_type, error=job.error or "the fence failed")
        if loop.time() > deadline:
            return FenceOutcome(fence_type, error=f"its job {job_id} did not end within "
                                                  f"{FENCE_WAIT_S:.0f} s")
        await asyncio.sleep(_POLL_S)


async def _queue_submit(session: AsyncSession, spec: JobSpec, **kwargs: Any) -> Job:
    return await queue.submit(session, spec, **kwargs)


async def _vms_on(session: AsyncSession, host_id: uuid.UUID) -> list[Vm]:
    return list((await session.execute(select(Vm).where(
        Vm.host_id == host_id, Vm.status.in_(ON_HOST)).order_by(Vm.id))).scalars())


async def _leave_unknown(ctx: JobContext, host: Host, vm_ids: list[uuid.UUID],
                         reason: str) -> None:
    if not vm_ids:
        return
    async with ctx.transaction() as session:
        vms = [await lookup.get(session, Vm, vm_id) for vm_id in vm_ids]
        ha = sorted(vm.name for vm in vms if vm.high_availability)
        names = ", ".join(sorted(vm.name for vm in vms))
        said = (f"; highly available VM(s) {', '.join(ha)} are not restarted elsewhere, so "
                "that no VM ever runs twice") if ha else ""
        audit.record(session, f"VM(s) {names} of non responsive host {host.name} stay "
                     f"unknown: there is no proof they are gone ({reason}){said}",
                     code=audit.VMS_LEFT_UNKNOWN, severity=LogSeverity.ERROR, host_id=host.id,
                     cluster_id=host.cluster_id, job_id=ctx.job.id)


async def _mark_down(ctx: JobContext, host: Host, proven: dict[uuid.UUID, str]
                     ) -> list[uuid.UUID]:
    """Proven VMs still recorded on the host are down; the highly available ones among them
    (or already down since the proof, e.g. seen gone by the monitor), highest priority first."""
    restart: list[tuple[int, str, uuid.UUID]] = []
    async with ctx.transaction() as session:
        for vm_id, why in proven.items():
            vm = await lookup.get(session, Vm, vm_id, for_update=True)
            if vm.host_id == host.id and vm.status in ON_HOST:
                vm.status, vm.host_id, vm.migration_host_id = VmStatus.DOWN, None, None
                vm.stop_time, vm.running_spec_version = utcnow(), None
                vm.stop_reason = f"{why}; not shut down gracefully"
                audit.record(session, f"VM {vm.name} is down: {why}; it was not shut down "
                             "gracefully", code=audit.VM_DOWN, severity=LogSeverity.WARNING,
                             vm_id=vm.id, host_id=host.id, cluster_id=vm.cluster_id,
                             job_id=ctx.job.id)
            if vm.status == VmStatus.DOWN and vm.high_availability:
                restart.append((-vm.ha_priority, vm.name, vm.id))
    return [vm_id for _p, _n, vm_id in sorted(restart)]


async def _restart(ctx: JobContext, host: Host, vm_ids: list[uuid.UUID]
                   ) -> tuple[list[str], list[str]]:
    """Start each VM where the scheduler places it now, in the given order: each reserves
    its host before the next is placed, so higher priorities get the room first."""
    restarted: list[str] = []
    refused: list[str] = []
    for vm_id in vm_ids:
        async with ctx.transaction() as session:
            vm = await lookup.get(session, Vm, vm_id)
            try:
                where = await _submit_start(ctx, session, vm, avoid=host.id)
            except Conflict as no:
                refused.append(vm.name)
                audit.record(session, f"Highly available VM {vm.name} could not be restarted "
                             f"after host {host.name} failed: {no}", code=audit.VM_HA_RESTART_FAILED,
                             severity=LogSeverity.ERROR, vm_id=vm.id, host_id=host.id,
                             cluster_id=vm.cluster_id, job_id=ctx.job.id)
                continue
            restarted.append(vm.name)
            audit.record(session, f"Highly available VM {vm.name} is restarted on host "
                         f"{where.name}: its host {host.name} failed and its copy there is "
                         "gone", code=audit.VM_HA_RESTARTED, severity=LogSeverity.WARNING,
                         vm_id=vm.id, host_id=where.id, cluster_id=vm.cluster_id,
                         job_id=ctx.job.id)
    return restarted, refused


async def _submit_start(ctx: JobContext, session: AsyncSession, vm: Vm, *,
                        avoid: uuid.UUID) -> Host:
    """Reserve the scheduler's choice and submit the VM's start job, as
    `services.vms.start_vm` does for a user. Lock order: the host's row, then the VM's.

    The host that failed (`avoid`) is chosen only when no other can take the VM: a fence
    restart may have brought it back already, and the cause of its failure is unknown
    (oVirt keeps a fenced host in `reboot`, out of the scheduler's choice, for a while)."""
    required, why = await required_host(session, vm)
    try:
        host_id = await reserve_host(session, vm, required=required, required_reason=why,
                                     leaving=avoid)
    except Conflict:
        host_id = await reserve_host(session, vm, required=required, required_reason=why)
    vm = await lookup.get(session, Vm, vm.id, for_update=True)
    if vm.status != VmStatus.DOWN:
        raise Conflict(f"it is {vm.status.replace('_', ' ')} now")
    spec = StartVm(vm_id=vm.id, host_id=host_id)
    submitter = ctx.services.jobs
    await (submitter.submit if submitter is not None else _queue_submit)(
        session, spec, description=f"Restarting highly available VM {vm.name}",
        correlation_id=ctx.job.correlation_id)
    vm.host_id, vm.status, vm.desired_status = host_id, VmStatus.WAIT_FOR_LAUNCH, "up"
    return await lookup.get(session, Host, host_id)


UNITS: dict[type[JobSpec], Unit[Any]] = {RecoverHost: Unit(recover_host)}
