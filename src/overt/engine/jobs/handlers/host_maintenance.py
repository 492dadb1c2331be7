"""Maintenance of a host that runs VMs: drain it, then switch it to maintenance.

The host is `preparing_for_maintenance` from the submission on, so the scheduler places
nothing new on it. Every VM it runs is checked first (a VM pinned to the host, or with
no other host to go to once the VMs before it have theirs, fails the job before anything
moves); then each VM is live-migrated by a migration job of its own (`MigrateVm`, run by
its own handler), reserved and submitted as a user's migration without a host is: the
scheduler chooses the destination within the cluster. When the host runs no VM any more it is in
maintenance. A failure leaves every VM running where it is, and the host `up`.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Host, Job, Vm
from overt.engine.jobs import overlay_peers, queue
from overt.engine.jobs.context import JobContext, Unit
from overt.engine.jobs.errors import JobFailed
from overt.engine.jobs.handlers.vm_migrate import MIGRATE_TIMEOUT_S
from overt.engine.jobs.kinds import DrainHost, JobSpec, MigrateVm
from overt.engine.model.errors import Conflict
from overt.engine.model.host_actions import HostAction, host_action_allowed, status_after
from overt.engine.model.node_states import ON_HOST
from overt.engine.model.placement_policy import migration_refusal
from overt.engine.model.status import HostStatus, LogSeverity, VmStatus
from overt.engine.queries import lookup
from overt.engine.queries.vm_spec import required_host
from overt.engine.scheduler.loads import choose_host, reserve_host

_POLL_S = 0.1
# Each migration job has its own node timeout; this bounds waiting for all of them.
DRAIN_TIMEOUT_S = MIGRATE_TIMEOUT_S + 120.0


async def _vms_on(session: AsyncSession, host_id: uuid.UUID) -> list[Vm]:
    return list((await session.execute(select(Vm).where(
        Vm.host_id == host_id, Vm.status.in_(ON_HOST)).order_by(Vm.name))).scalars())


async def _why_it_stays(session: AsyncSession, vm: Vm, host: Host
                        ) -> tuple[str | None, uuid.UUID | None]:
    """Why `vm` cannot leave `host` now (None when it can), and where it would go."""
    if vm.status == VmStatus.MIGRATING:
        return None, None  # leaving already: waited for below
    if vm.status != VmStatus.UP:
        return f"VM {vm.name} is {vm.status.replace('_', ' ')}, and only a VM up migrates", None
    if vm.origin == "external":
        return f"VM {vm.name} is external (not created by Overt) and cannot be migrated", None
    local, why = await required_host(session, vm)
    if local is not None:
        return f"VM {vm.name} cannot move: {why}", None
    refusal = migration_refusal(vm.name, vm.placement_affinity, by_engine=False)
    if refusal is not None:
        return refusal, None
    try:
        return None, await choose_host(session, vm, leaving=host.id, draining=True)
    except Conflict as no_host:
        return f"VM {vm.name} has no host to go to: {no_host}", None


class _Checked(Exception):
    """Carries the check's findings out of its transaction, so that the trial moves it
    recorded are rolled back."""

    def __init__(self, staying: list[str]) -> None:
        super().__init__("; ".join(staying))
        self.staying = staying


async def _check_every_vm(ctx: JobContext, host: Host) -> list[str]:
    """Why VMs cannot leave `host`, VM by VM. The VMs are tried in the order the drain
    moves them, each recorded (in a transaction rolled back) as migrating where the
    scheduler would send it, so that the next one sees its memory and its affinity groups
    as they will be: VMs that fit one by one but not all together are found here, before
    anything moves."""
    try:
        async with ctx.transaction() as session:
            staying: list[str] = []
            for vm in await _vms_on(session, host.id):
                why, destination = await _why_it_stays(session, vm, host)
                if why is not None:
                    staying.append(why)
                elif destination is not None:
                    vm.status, vm.migration_host_id = VmStatus.MIGRATING, destination
                    await session.flush()
            raise _Checked(staying)
    except _Checked as checked:
        return checked.staying


async def drain_host(ctx: JobContext, spec: DrainHost) -> dict[str, Any]:
    async with ctx.transaction() as session:
        host = await lookup.get(session, Host, spec.host_id)
        if host.status == HostStatus.MAINTENANCE:
            return {}
        if host.status != HostStatus.PREPARING_FOR_MAINTENANCE:
            raise JobFailed(f"host {host.name} is {host.status}, no longer preparing for "
                            "maintenance")
    async with ctx.step(f"Checking that every VM can leave host {host.name}",
                        host_id=host.id):
        staying = await _check_every_vm(ctx, host)
        if staying:
            raise JobFailed(f"Cannot switch host {host.name} to maintenance: "
                            f"{'; '.join(staying)}. No VM was moved or stopped.")
    async with ctx.step(f"Migrating the VMs of host {host.name} to other hosts",
                        host_id=host.id):
        failures = await _migrate_all(ctx, host)
        if failures:
            raise JobFailed(f"Cannot switch host {host.name} to maintenance: "
                            f"{'; '.join(failures)}. The VMs that could not move still run "
                            f"on host {host.name}.")
        await _wait_until_empty(ctx, host)
    async with ctx.transaction() as session:
        host = await lookup.get(session, Host, spec.host_id, for_update=True)
        if host.status == HostStatus.MAINTENANCE:
            return {}
        if not host_action_allowed(HostAction.DRAINED, host.status):
            raise JobFailed(f"host {host.name} is {host.status} now, no longer preparing for "
                            "maintenance; its VMs run on other hosts")
        if await _vms_on(session, host.id):
            raise JobFailed(f"host {host.name} runs VMs again; switch it to maintenance "
                            "again")
        host.status = status_after(HostAction.DRAINED)
        audit.record(session, f"Host {host.name} was switched to maintenance: its VMs run "
                     "on other hosts", code=audit.HOST_MAINTENANCE, host_id=host.id,
                     cluster_id=host.cluster_id, job_id=ctx.job.id, user_id=ctx.job.owner_id)
        await overlay_peers.rewire(session, ctx.services.jobs, host,
                                   why=f"host {host.name} left (maintenance)",
                                   owner_id=ctx.job.owner_id)
    return {}


async def _migrate_all(ctx: JobContext, host: Host) -> list[str]:
    """Submit one migration job per VM up on `host`, wait for all of them; what failed,
    VM by VM."""
    failures: list[str] = []
    submitted: dict[str, uuid.UUID] = {}
    async with ctx.transaction() as session:
        leaving = [(vm.id, vm.name) for vm in await _vms_on(session, host.id)
                   if vm.status == VmStatus.UP]
    for vm_id, name in leaving:
        try:
            async with ctx.transaction() as session:
                submitted[name] = await _submit_migration(ctx, session, vm_id, host)
        except Conflict as refused:
            failures.append(f"VM {name}: {refused}")
    for name, job_id in submitted.items():
        error = await _job_error(ctx, job_id)
        if error is not None:
            failures.append(f"VM {name} failed to migrate: {error}")
    return failures


async def _submit_migration(ctx: JobContext, session: AsyncSession, vm_id: uuid.UUID,
                            source: Host) -> uuid.UUID:
    """Reserve the scheduler's choice of destination and submit the VM's migration job,
    as `services.vms.migrate_vm` does for a user (the drain checked the VM may move).
    Lock order: the destination host's row, then the VM's."""
    vm = await lookup.get(session, Vm, vm_id)
    destination_id = await reserve_host(session, vm, leaving=source.id, draining=True)
    vm = await lookup.get(session, Vm, vm_id, for_update=True)
    if vm.status != VmStatus.UP or vm.host_id != source.id:
        raise Conflict(f"the VM is {vm.status.replace('_', ' ')} now, no longer up on host "
                       f"{source.name}")
    spec = MigrateVm(vm_id=vm.id, source_host_id=source.id, host_id=destination_id)
    description = f"Migrating VM {vm.name}"
    submitter = ctx.services.jobs  # wakes this process's worker; else the workers poll
    job: Job
    if submitter is not None:
        job = await submitter.submit(session, spec, description=description,
                                     owner_id=ctx.job.owner_id,
                                     correlation_id=ctx.job.correlation_id)
    else:
        job = await queue.submit(session, spec, description=description,
                                 owner_id=ctx.job.owner_id,
                                 correlation_id=ctx.job.correlation_id)
    vm.status, vm.migration_host_id = VmStatus.MIGRATING, destination_id
    destination = await lookup.get(session, Host, destination_id)
    audit.record(session, f"Migration of VM {vm.name} from host {source.name} to host "
                 f"{destination.name} was started", code=audit.VM_MIGRATION_STARTED,
                 vm_id=vm.id, host_id=source.id, cluster_id=vm.cluster_id, job_id=job.id,
                 user_id=ctx.job.owner_id)
    return job.id


async def _job_error(ctx: JobContext, job_id: uuid.UUID) -> str | None:
    """Wait for a job to end: None if it succeeded, else its error."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_TIMEOUT_S
    while True:
        async with ctx.transaction() as session:
            job = await session.get(Job, job_id, populate_existing=True)
        if job is None:
            return f"its job {job_id} is gone"
        if job.state == "done":
            return None
        if job.state == "failed":
            return job.error or "the migration failed"
        if loop.time() > deadline:
            return f"its job {job_id} did not end within {DRAIN_TIMEOUT_S:.0f} s"
        await asyncio.sleep(_POLL_S)


async def _wait_until_empty(ctx: JobContext, host: Host) -> None:
    """Wait until the monitor shows no VM on the host (VMs that were migrating away when
    the maintenance began arrive too)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_TIMEOUT_S
    while True:
        async with ctx.transaction() as session:
            left = await _vms_on(session, host.id)
            if not left:
                return
            stuck = [vm.name for vm in left if vm.status != VmStatus.MIGRATING]
        if stuck or loop.time() > deadline:
            raise JobFailed(f"Cannot switch host {host.name} to maintenance: VM(s) "
                            f"{', '.join(stuck or [vm.name for vm in left])} still run on it")
        await asyncio.sleep(_POLL_S)


async def stay_up(session: AsyncSession, ctx: JobContext, spec: DrainHost,
                  message: str) -> None:
    """The drain failed: the host serves as before (its remaining VMs keep running)."""
    host = await session.get(Host, spec.host_id)
    if host is None:
        return
    if host.status == HostStatus.PREPARING_FOR_MAINTENANCE:
        host.status = status_after(HostAction.DRAIN_FAILED)
    audit.record(session, f"Host {host.name} failed to switch to maintenance: {message}",
                 code=audit.HOST_MAINTENANCE_FAILED, severity=LogSeverity.ERROR,
                 host_id=host.id, cluster_id=host.cluster_id, job_id=ctx.job.id,
                 user_id=ctx.job.owner_id)


UNITS: dict[type[JobSpec], Unit[Any]] = {DrainHost: Unit(drain_host, compensate=stay_up)}
