"""Live migration: the source's agent hands a running VM to the destination's hypervisor.

The destination was reserved at submission (the VM's `migration_host_id`, whose memory
counts the VM from then on), as a start reserves its host. The VM shows `migrating`
while the job runs; the monitor, the one writer of observed status, moves the VM to
its destination when the destination reports it running, so the VM is never shown on
two hosts nor on none. A failed migration leaves the VM where it runs: its source.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Cluster, Host, Vm
from overt.engine.jobs.context import JobContext, Unit
from overt.engine.jobs.errors import JobFailed
from overt.engine.jobs.handlers.vms import want_what_is
from overt.engine.jobs.kinds import CancelMigration, JobSpec, MigrateVm
from overt.engine.jobs.observe import observed_vm
from overt.engine.model.migration_options import MigrationOptions, effective_policy
from overt.engine.model.migration_safety import live_migration_hazard, paused_policy
from overt.engine.model.status import HostStatus, LogSeverity, VmStatus
from overt.engine.queries import lookup
from overt.engine.queries.host_networks import migration_address
from overt.engine.queries.vm_spec import chap_luns, lease_spec
from overt.protocol.commands import (
    VmAbandonIncoming,
    VmCancelMigration,
    VmLeaseTakeOver,
    VmMigrate,
    VmMigrationProgress,
    VmPrepareIncoming,
)
from overt.protocol.host import VmStatusReport
from overt.protocol.migration import MigrationOutcome, MigrationPolicy, MigrationProgress
from overt.protocol.storage import IscsiLunRef
from overt.protocol.vm import LeaseSpec

log = logging.getLogger(__name__)
MIGRATE_TIMEOUT_S = 600.0
_MIGRATING = frozenset({VmStatus.MIGRATING})
_SOURCE_OK = frozenset({HostStatus.UP, HostStatus.PREPARING_FOR_MAINTENANCE})


def destination_uris(ctx: JobContext, host: Host, stream_address: str) -> tuple[str, str | None]:
    """The libvirt URI the source opens to reach the destination (by its management
    address), and QEMU's stream URI (by `stream_address`, on the migration network if any)."""
    settings = ctx.services.settings
    stream = settings.migration_stream_uri.format(address=stream_address, name=host.name)
    return settings.migration_destination_uri.format(address=host.address,
                                                     name=host.name), stream or None


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MiB"


def progress_text(progress: MigrationProgress) -> str:
    """A migration in flight, as its step says it."""
    said = [f"{progress.percent}% of {_mib(progress.memory_total_bytes)} sent",
            f"{_mib(progress.memory_remaining_bytes)} remaining",
            f"iteration {progress.iteration}"]
    if progress.expected_downtime_ms is not None:
        said.append(f"expected downtime {progress.expected_downtime_ms} ms")
    if progress.post_copy:
        said.append("post-copy")
    return ", ".join(said)


def outcome_text(outcome: MigrationOutcome) -> str:
    """A completed migration's figures: total time, downtime, bytes transferred."""
    downtime = f"{outcome.downtime_ms} ms" if outcome.downtime_ms is not None else "unknown"
    said = f"total {outcome.total_ms / 1000:.1f} s, downtime {downtime}, " \
           f"{_mib(outcome.transferred_bytes)} transferred"
    return said + (", post-copy" if outcome.post_copy else "") + \
        ("" if outcome.live else ", guest paused")


async def _policy(session: AsyncSession, vm: Vm) -> MigrationPolicy:
    cluster = await lookup.get(session, Cluster, vm.cluster_id)
    return effective_policy(MigrationOptions.from_json(cluster.migration),
                            MigrationOptions.from_json(vm.migration), vm.migration_downtime_ms)


async def migrate_vm(ctx: JobContext, spec: MigrateVm) -> dict[str, Any]:
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, spec.vm_id)
        if vm.host_id == spec.host_id and vm.status == VmStatus.UP:
            return {"host_id": str(spec.host_id)}  # it has arrived already
        if vm.status != VmStatus.MIGRATING or vm.host_id != spec.source_host_id:
            raise JobFailed(f"VM {vm.name} is {vm.status}, no longer migrating from its "
                            "host; migrate it again")
        source = await lookup.get(session, Host, spec.source_host_id)
        destination = await lookup.get(session, Host, spec.host_id)
        policy = await _policy(session, vm)
        stream_address, network = await migration_address(session, destination)
        box = ctx.services.secret_box()
        lease = await lease_spec(session, vm, ctx.services.settings.lease_io_timeout_s,
                                 box=box)
        luns = await chap_luns(session, vm, box)
    # A source preparing for maintenance is being drained: its VMs leave it this way.
    for host, fit in ((source, _SOURCE_OK), (destination, {HostStatus.UP})):
        if host.status not in fit:
            raise JobFailed(f"host {host.name} is {host.status}; VM {vm.name} stays on "
                            f"host {source.name}")
    uri, stream = destination_uris(ctx, destination, stream_address)
    title = f"Migrating VM {vm.name} from host {source.name} to host {destination.name}"
    if network is not None:
        title += f" over network {network.name}"
    hazard = live_migration_hazard(source.capabilities)
    if hazard is not None and policy.live and not ctx.services.settings.migration_tcg_live:
        policy = paused_policy(policy)
        title += " with the guest paused for the copy"
        async with ctx.transaction() as session:
            audit.record(session, f"VM {vm.name} is migrated with its guest paused for the "
                         f"copy, not live: host {source.name} cannot migrate it live safely "
                         f"({hazard})", code=audit.VM_MIGRATION_PAUSED,
                         severity=LogSeverity.WARNING, vm_id=vm.id, host_id=source.id,
                         cluster_id=vm.cluster_id, job_id=ctx.job.id,
                         user_id=ctx.job.owner_id)
    # The same token on a retry of this job: the source's offer and the destination's
    # take-over name one hand-over.
    token = uuid.uuid5(ctx.job.id, "lease-handover") if lease is not None else None
    command = VmMigrate(vm_id=spec.vm_id, destination_uri=uri, migration_uri=stream,
                        display_address=destination.address, timeout_s=MIGRATE_TIMEOUT_S,
                        policy=policy, lease_handover=token)
    if luns:
        await _prepare_destination(ctx, vm.name, spec.vm_id, destination, luns)
    try:
        outcome = await _migrate(ctx, spec.vm_id, source, command, title)
    except Exception:
        if luns:
            await _abandon_destination(ctx, spec.vm_id, destination)
        raise
    figures = f" ({outcome_text(outcome)})" if outcome is not None else ""
    if lease is not None and token is not None:
        await _take_over_lease(ctx, vm.name, spec.vm_id, destination, lease, token)

    async def arrived(session: AsyncSession, vm: Vm) -> None:
        audit.record(session, f"VM {vm.name} migrated from host {source.name} to host "
                     f"{destination.name}{figures}", code=audit.VM_MIGRATED, vm_id=vm.id,
                     host_id=destination.id, cluster_id=vm.cluster_id, job_id=ctx.job.id,
                     user_id=ctx.job.owner_id)
    await observed_vm(ctx, spec.vm_id, {VmStatus.UP}, passing=_MIGRATING, settle=arrived)
    result: dict[str, Any] = {"host_id": str(destination.id)}
    if outcome is not None:
        result["migration"] = outcome.model_dump()
    return result


async def _migrate(ctx: JobContext, vm_id: uuid.UUID, source: Host, command: VmMigrate,
                   title: str) -> MigrationOutcome | None:
    """The source's node migrates the VM; its step follows the progress and ends with
    the figures (None when the node gave none)."""
    async with ctx.step(title, host_id=source.id) as step:
        migration = asyncio.create_task(ctx.nodes.call(
            source, command, key=ctx.key("migrate"), timeout_s=MIGRATE_TIMEOUT_S + 30))
        try:
            interval = ctx.services.settings.migration_progress_interval_s

            async def read() -> tuple[str, int] | None:
                progress = await ctx.nodes.call(source, VmMigrationProgress(vm_id=vm_id),
                                                timeout_s=max(5.0, interval * 5))
                return (progress_text(progress), progress.percent) if progress.active \
                    else None
            await ctx.follow_step(step.id, title, migration, read, interval_s=interval)
            outcome = (await migration).migration
        finally:
            migration.cancel()
        if outcome is not None:
            await ctx.update_step(step.id, description=f"{title}: {outcome_text(outcome)}",
                                  progress=100)
    return outcome


async def _prepare_destination(ctx: JobContext, name: str, vm_id: uuid.UUID,
                               destination: Host, luns: tuple[IscsiLunRef, ...]) -> None:
    """The destination's libvirtd gets the iSCSI CHAP secrets the VM's disks name before
    the VM comes (the source's libvirt does not carry them; the passwords travel in this
    command only)."""
    async with ctx.step(f"Preparing host {destination.name} for VM {name}",
                        host_id=destination.id):
        await ctx.nodes.call(destination, VmPrepareIncoming(vm_id=vm_id, luns=luns),
                             key=ctx.key("prepare-incoming"))


async def _abandon_destination(ctx: JobContext, vm_id: uuid.UUID, destination: Host) -> None:
    """The migration failed: the destination drops the secrets only that VM needed there.
    Best effort: the job fails for the migration's reason, not for this."""
    try:
        await ctx.nodes.call(destination, VmAbandonIncoming(vm_id=vm_id),
                             key=ctx.key("abandon-incoming"), timeout_s=30)
    except Exception as exc:
        log.warning("the secrets of VM %s may stay on host %s: %s", vm_id, destination.name,
                    exc)


async def _take_over_lease(ctx: JobContext, name: str, vm_id: uuid.UUID, destination: Host,
                           lease: LeaseSpec, token: uuid.UUID) -> None:
    """The VM runs on the destination now: its keeper takes the lease the source offered.
    If it cannot, the VM stays where it is and the source's keeper keeps the lease (a
    second copy still cannot start) until it frees it; the event says so."""
    title = f"Moving the lease of VM {name} to host {destination.name}"
    try:
        async with ctx.step(title, host_id=destination.id):
            await ctx.nodes.call(destination, VmLeaseTakeOver(vm_id=vm_id, lease=lease,
                                                              token=token),
                                 key=ctx.key("lease-take-over"),
                                 timeout_s=30 + 12 * lease.io_timeout_s)
    except Exception as exc:
        log.warning("the lease of VM %s did not move: %s", vm_id, exc)
        async with ctx.transaction() as session:
            audit.record(session, f"VM {name} migrated to host {destination.name}, but its "
                         f"lease could not move there: {exc}", code=audit.VM_LEASE_NOT_MOVED,
                         severity=LogSeverity.WARNING, vm_id=vm_id, host_id=destination.id,
                         job_id=ctx.job.id, user_id=ctx.job.owner_id)


async def stay_on_source(session: AsyncSession, ctx: JobContext, spec: MigrateVm,
                         message: str) -> None:
    """The migration failed: the VM runs on its source as before, the destination's room
    is given back, and both hosts are read again so the monitor confirms where it runs."""
    vm = await session.get(Vm, spec.vm_id)
    if vm is None:
        return
    if vm.status == VmStatus.MIGRATING:
        vm.status = VmStatus.UP
    vm.migration_host_id = None
    for host_id in (spec.source_host_id, spec.host_id):
        host = await session.get(Host, host_id)
        if host is not None:
            host.needs_resync = True
    audit.record(session, f"Migration of VM {vm.name} failed: {message}",
                 code=audit.VM_MIGRATION_FAILED, severity=LogSeverity.ERROR, vm_id=vm.id,
                 host_id=spec.source_host_id, job_id=ctx.job.id, user_id=ctx.job.owner_id)
    want_what_is(vm)


async def cancel_migration(ctx: JobContext, spec: CancelMigration) -> dict[str, Any]:
    """The source's node aborts the migration; the migration's job then fails, and its
    compensation leaves the VM up on its source."""
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, spec.vm_id)
        source = await lookup.get(session, Host, spec.host_id)
    async with ctx.step(f"Cancelling the migration of VM {vm.name} on host {source.name}",
                        host_id=source.id):
        await ctx.nodes.call(source, VmCancelMigration(vm_id=spec.vm_id), VmStatusReport,
                             key=ctx.key("cancel-migration"))
    async with ctx.transaction() as session:
        audit.record(session, f"Migration of VM {vm.name} was cancelled",
                     code=audit.VM_MIGRATION_CANCELLED, vm_id=vm.id, host_id=source.id,
                     job_id=ctx.job.id, user_id=ctx.job.owner_id)
    return {}


UNITS: dict[type[JobSpec], Unit[Any]] = {
    MigrateVm: Unit(migrate_vm, compensate=stay_on_source),
    CancelMigration: Unit(cancel_migration)}
