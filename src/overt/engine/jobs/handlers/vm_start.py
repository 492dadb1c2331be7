"""Starting a VM (or resuming a suspended one) on the host its submission reserved.

Placement happened once, at submission, which recorded the VM on the chosen host in a
launching status (the reservation of the host's memory). The job sends the node the
VM's spec and waits for the monitor to see the VM run; it never writes the VM's status
from the node's reply. When it fails for good, its compensation gives the reservation
back: the VM is down (or suspended, its memory kept) and on no host.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Host, Snapshot, StorageDomain, Vm, utcnow
from overt.engine.jobs import queue
from overt.engine.jobs.context import JobContext, Unit
from overt.engine.jobs.errors import JobFailed, RetryLater
from overt.engine.jobs.handlers.snapshot_memory import memory_source
from overt.engine.jobs.handlers.vms import want_what_is
from overt.engine.jobs.kinds import JobSpec, StartVm
from overt.engine.jobs.observe import observed_vm
from overt.engine.model.initialization import Initialization
from overt.engine.model.nocloud import render_nocloud
from overt.engine.model.node_states import ON_HOST, vm_status_of
from overt.engine.model.status import HostStatus, LogSeverity, VmStatus
from overt.engine.queries import lookup
from overt.engine.queries.vm_spec import build_vm_spec, console_password
from overt.engine.secrets import is_sealed
from overt.protocol.commands import VmResume, VmStart
from overt.protocol.host import VmStatusReport
from overt.protocol.vm import ConfigDriveSpec, IscsiSource, NfsSource, VmSpec

# Where a starting VM may be before the monitor sees it run (PAUSED: a paused VM resumed).
_LAUNCHING = frozenset({VmStatus.WAIT_FOR_LAUNCH, VmStatus.RESTORING_STATE, VmStatus.POWERING_UP,
                        VmStatus.PAUSED})
START_TIMEOUT_S = 180


async def start_vm(ctx: JobContext, spec: StartVm) -> dict[str, Any]:
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, spec.vm_id, for_update=True)
        if vm.status == VmStatus.UP and vm.host_id is not None:
            return {"host_id": str(vm.host_id)}  # a retried job whose start already happened
        host_id = spec.host_id or vm.host_id
        if host_id is None or vm.host_id != host_id:
            raise JobFailed(f"VM {vm.name} has no host reserved for its start; start it again")
        host = await lookup.get(session, Host, host_id)
        paused = vm.status == VmStatus.PAUSED  # oVirt's start of a paused VM: it goes on
        if not paused:
            spec, launch = await _launch(session, ctx, spec, vm, host)
    if paused:
        return await _resume(ctx, spec, vm.name, host)
    vm_spec, restore_from, memory_from = launch
    if host.status != HostStatus.UP:
        raise RetryLater(f"host {host.name}, reserved for VM {vm.name}, is {host.status}")
    what = "Resuming VM {} on host {} from the memory of a snapshot" if memory_from else \
        "Starting VM {} on host {}"
    async with ctx.step(what.format(vm.name, host.name), host_id=host.id):
        report = await ctx.nodes.call(
            host, VmStart(vm_id=spec.vm_id, spec=vm_spec, restore_from=restore_from,
                          memory_from=memory_from),
            VmStatusReport, key=ctx.key("start"), timeout_s=START_TIMEOUT_S)

    async def started(session: AsyncSession, vm: Vm) -> None:
        vm.start_time = utcnow()
        vm.saved_state_path, vm.saved_state_host_id = None, None
        vm.resume_snapshot_id = None  # resumed once; the next start boots (as oVirt)
        await _forget_console_password(session, ctx, spec)
        audit.record(session, f"VM {vm.name} started on host {host.name}", code=audit.VM_UP,
                     vm_id=vm.id, host_id=host.id, cluster_id=vm.cluster_id, job_id=ctx.job.id,
                     user_id=ctx.job.owner_id)
    expected = vm_status_of(report.state)
    # Running in any form counts (a restored guest may already be shutting down); a VM
    # started paused, or resumed from pause, must show it.
    reached = (ON_HOST - _LAUNCHING) | {expected} if expected is not VmStatus.UP else \
        ON_HOST - _LAUNCHING
    await observed_vm(ctx, spec.vm_id, reached, passing=_LAUNCHING - reached, settle=started)
    return {"host_id": str(host.id)}


async def _launch(session: AsyncSession, ctx: JobContext, spec: StartVm, vm: Vm, host: Host
                  ) -> tuple[StartVm, tuple[VmSpec, str | None, NfsSource | IscsiSource | None]]:
    """What the node is sent to run the VM: its spec, and a saved state or a snapshot's
    memory it resumes from (the job's spec, with the console password kept for retries)."""
    if spec.vnc_password is None:  # kept for retries, which must send the same spec
        spec = spec.model_copy(update={"vnc_password": console_password()})
        await queue.store_spec(session, ctx.job.id, spec)
    # The run's cdrom media: the run-once one, else the VM's next-run configuration.
    vm.cdrom_current_disk_id = spec.cdrom_disk_id if spec.cdrom_given else vm.cdrom_disk_id
    # The console listens where the engine reaches the host, and only there.
    vm_spec = await build_vm_spec(session, vm, vnc_password=spec.vnc_password or "",
                                  display_address=host.address,
                                  config_drive=_config_drive(ctx, spec, vm),
                                  lease_io_timeout_s=ctx.services.settings.lease_io_timeout_s,
                                  boot_devices=spec.boot,
                                  box=ctx.services.secret_box())
    restore_from = vm.saved_state_path if vm.status == VmStatus.RESTORING_STATE else None
    memory_from = await _snapshot_memory(session, ctx, vm) if restore_from is None else None
    return spec, (vm_spec, restore_from, memory_from)


async def _resume(ctx: JobContext, spec: StartVm, name: str, host: Host) -> dict[str, Any]:
    """A paused VM (paused by a user, or by a storage I/O error its storage no longer
    gives) runs on where it is; the monitor sees it up."""
    async with ctx.step(f"Resuming VM {name} on host {host.name}", host_id=host.id):
        await ctx.nodes.call(host, VmResume(vm_id=spec.vm_id), VmStatusReport,
                             key=ctx.key("resume"), timeout_s=START_TIMEOUT_S)

    async def resumed(session: AsyncSession, vm: Vm) -> None:
        audit.record(session, f"VM {name} resumed on host {host.name}", code=audit.VM_UP,
                     vm_id=vm.id, host_id=host.id, cluster_id=vm.cluster_id,
                     job_id=ctx.job.id, user_id=ctx.job.owner_id)
    await observed_vm(ctx, spec.vm_id, ON_HOST - _LAUNCHING, passing=_LAUNCHING,
                      settle=resumed)
    return {"host_id": str(host.id)}


async def _snapshot_memory(session: AsyncSession, ctx: JobContext, vm: Vm
                           ) -> NfsSource | IscsiSource | None:
    """The saved state a restore or preview with memory left for this start, if any."""
    if vm.resume_snapshot_id is None:
        return None
    snapshot = await session.get(Snapshot, vm.resume_snapshot_id)
    if snapshot is None or not snapshot.memory_volume or snapshot.memory_domain_id is None:
        return None
    domain = await lookup.get(session, StorageDomain, snapshot.memory_domain_id)
    return memory_source(domain, snapshot.memory_volume, ctx.services.secret_box())


def _config_drive(ctx: JobContext, spec: StartVm, vm: Vm) -> ConfigDriveSpec | None:
    """The run's cloud-init data: the run-once initialization, else the VM's own."""
    if spec.use_cloud_init is False:
        return None
    stored = spec.initialization or vm.initialization
    if not stored:
        return None
    init = Initialization.from_json(stored)
    if init.root_password is not None and is_sealed(init.root_password):
        init = replace(init, root_password=ctx.services.secret_box().open(
            init.root_password).reveal())
    files = render_nocloud(init, vm.id)
    return ConfigDriveSpec(user_data=files.user_data, meta_data=files.meta_data,
                           network_config=files.network_config)


async def _forget_console_password(session: AsyncSession, ctx: JobContext, spec: StartVm
                                   ) -> None:
    """The start's console password (and run-once initialization, which may hold a root
    password) served only to make retries identical: drop them."""
    await queue.store_spec(session, ctx.job.id, spec.model_copy(
        update={"vnc_password": None, "initialization": None}))


async def release_reservation(session: AsyncSession, ctx: JobContext, spec: StartVm,
                              message: str) -> None:
    """The start failed for good: the reserved host's room is given back, the VM is down
    again (or suspended, its saved memory kept) and nothing stays locked."""
    await _forget_console_password(session, ctx, spec)
    vm = await session.get(Vm, spec.vm_id)
    if vm is None:
        return
    if vm.resume_snapshot_id is not None:  # a state that did not resume: the next run boots
        vm.resume_snapshot_id = None
    if vm.status == VmStatus.RESTORING_STATE:
        vm.status, vm.host_id = VmStatus.SUSPENDED, None
        audit.record(session, f"Failed to resume VM {vm.name}: {message}",
                     code=audit.VM_START_FAILED, severity=LogSeverity.ERROR, vm_id=vm.id,
                     job_id=ctx.job.id)
    elif vm.status in (VmStatus.WAIT_FOR_LAUNCH, VmStatus.POWERING_UP):
        vm.status, vm.host_id = VmStatus.DOWN, None
        audit.record(session, f"Failed to run VM {vm.name}: {message}",
                     code=audit.VM_START_FAILED, severity=LogSeverity.ERROR, vm_id=vm.id,
                     job_id=ctx.job.id)
    want_what_is(vm)


UNITS: dict[type[JobSpec], Unit[Any]] = {
    StartVm: Unit(start_vm, compensate=release_reservation)}
