"""Making the database agree with what a node really runs (on a full state report)."""

from __future__ import annotations

import logging
import re
import uuid

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import Host, Job, Lock, Vm, utcnow
from overt.engine.jobs.kinds import ShutdownVm, StopVm
from overt.engine.jobs.queue import locked_by, release_on_end
from overt.engine.model.host_actions import HostAction, host_action_allowed, status_after
from overt.engine.model.node_states import IO_ERROR, ON_HOST, paused_reason, vm_status_of
from overt.engine.model.status import HostStatus, LogSeverity, VmStatus
from overt.engine.monitor.required_networks import judge_host
from overt.protocol.host import HostState, VmState, VmStatusReport

log = logging.getLogger(__name__)

_LAUNCHING = frozenset({VmStatus.WAIT_FOR_LAUNCH, VmStatus.RESTORING_STATE})
# Jobs that end a VM: one they hold that its host no longer runs is down, as they expect.
_ENDING = frozenset({StopVm.kind, ShutdownVm.kind})


def mark_host_up(session: AsyncSession, host: Host) -> None:
    """The node was heard: a host the monitor was waiting for is up."""
    if host_action_allowed(HostAction.HEAR, host.status):
        said = f"Host {host.name} is up"
        if host.status == HostStatus.CONNECTING and host.unreachable_since is not None:
            silent = (utcnow() - host.unreachable_since).total_seconds()
            said = (f"Host {host.name} answers again {silent:.0f} s into its grace period: "
                    "it is up, nothing was done to it or its VMs")
        audit.record(session, said, code=audit.HOST_UP, host_id=host.id,
                     cluster_id=host.cluster_id)
        host.status, host.status_detail = status_after(HostAction.HEAR), ""
    host.last_heartbeat_at, host.unreachable_since = utcnow(), None


async def apply_vm_report(session: AsyncSession, host: Host, report: VmStatusReport, *,
                          locked: set[uuid.UUID] | None = None) -> None:
    """One VM's state as `host` reports it (a lifecycle event or part of a full report).

    The monitor is the one writer of a VM's observed status, also while a job acts on
    the VM: the job waits for the status its action leads to (see `jobs.observe`) and
    records the outcome in the audit log itself, so the monitor adds none for such a
    VM. A job's own events settle its VM without a resync; the end a stop, shutdown or
    suspend waits for releases its VM in the same transaction, so a VM shown down or
    suspended is free for the next action. `locked`: the VMs known to be locked by jobs
    (else asked of the database).
    """
    vm = await session.get(Vm, report.vm_id) if report.vm_id is not None else None
    if vm is None:
        await _external_vm(session, host, report)
        return
    held = vm.id in locked if locked is not None else \
        await locked_by(session, "vm", vm.id) is not None
    if vm.status == VmStatus.MIGRATING and vm.migration_host_id is not None:
        if host.id == vm.migration_host_id:
            if report.state is not VmState.RUNNING:
                return  # the incoming copy, paused until the source hands it over
            vm.migration_host_id = None  # handed over: the VM is the destination's now
            vm.host_id = host.id
        elif host.id == vm.host_id:
            # The source's news during the handover (paused, then gone): the destination's
            # report settles the VM; a failed migration's job reads the source again.
            return
    if vm.host_id != host.id:
        _refuse_foreign(session, host, vm, report)
        return
    new_status = vm_status_of(report.state)
    if vm.status == VmStatus.SAVING_STATE and report.state is VmState.PAUSED:
        return  # saving its memory pauses the VM first: still on its way to suspended
    if vm.status in (VmStatus.SUSPENDED, VmStatus.SAVING_STATE) and \
            report.state in (VmState.GONE, VmState.SHUTOFF, VmState.SUSPENDED):
        # A VM suspended to disk runs nowhere: its domain is gone on purpose.
        _runs_nowhere(vm, VmStatus.SUSPENDED)
        if held:
            await release_on_end(session, vm.id, VmStatus.SUSPENDED)
        return
    if new_status is VmStatus.DOWN:
        if vm.status != VmStatus.DOWN and not held:
            audit.record(session, f"VM {vm.name} is down on host {host.name}"
                         + (f" ({report.reason})" if report.reason else ""),
                         code=audit.VM_DOWN, vm_id=vm.id, host_id=host.id)
        _runs_nowhere(vm, VmStatus.DOWN)
        if held:
            await release_on_end(session, vm.id, VmStatus.DOWN)
        return
    if vm.status != new_status and new_status is VmStatus.UP and not held and \
            vm.status not in (VmStatus.WAIT_FOR_LAUNCH, VmStatus.POWERING_UP) and \
            vm.paused_reason != IO_ERROR:  # that one has its own event (_note_pause)
        audit.record(session, f"VM {vm.name} is up on host {host.name}", code=audit.VM_UP,
                     vm_id=vm.id, host_id=host.id)
    _note_pause(session, vm, new_status, report)
    vm.status, vm.host_id = new_status, host.id
    if held and new_status is VmStatus.UP:  # a start's end: the VM is free as users see it up
        await release_on_end(session, vm.id, VmStatus.UP)
    if report.spec_version is not None:
        vm.running_spec_version = report.spec_version
    if report.vnc_port is not None:
        vm.vnc_port = report.vnc_port


def _note_pause(session: AsyncSession, vm: Vm, status: VmStatus, report: VmStatusReport
                ) -> None:
    """Why the node says the VM is paused, kept while it is (the storage monitor resumes
    the VMs an I/O error paused); oVirt's events for such a pause and its end."""
    reason = paused_reason(report) if status is VmStatus.PAUSED else ""
    if reason == IO_ERROR and vm.paused_reason != IO_ERROR:
        audit.record(session, f"VM {vm.name} has been paused due to storage I/O problem.",
                     code=audit.VM_PAUSED_EIO, severity=LogSeverity.ERROR, vm_id=vm.id,
                     host_id=vm.host_id)
    elif vm.paused_reason == IO_ERROR and status is VmStatus.UP:
        audit.record(session, f"VM {vm.name} has recovered from paused back to up.",
                     code=audit.VM_RECOVERED_FROM_PAUSE_ERROR, vm_id=vm.id, host_id=vm.host_id)
    if vm.paused_reason != reason:
        vm.paused_reason = reason


def _runs_nowhere(vm: Vm, status: VmStatus) -> None:
    """The VM has left its host (down, or suspended to disk), as its node reports."""
    vm.status, vm.host_id, vm.vnc_port, vm.running_spec_version = status, None, None, None
    if vm.paused_reason:
        vm.paused_reason = ""
    if status is VmStatus.DOWN:
        vm.stop_time = utcnow()


_NOT_RUNNING = frozenset({VmState.GONE, VmState.SHUTOFF, VmState.CRASHED, VmState.SUSPENDED})


def _refuse_foreign(session: AsyncSession, host: Host, vm: Vm, report: VmStatusReport) -> None:
    """A report of a VM the engine did not place on `host` changes nothing.

    News that it is not running there is stale and harmless (it has moved, or is
    down). A claim that it runs there is either a node acting beyond its own host or
    a domain started behind the engine's back: audited, for an administrator to
    look at, and never a reason to move the VM (its console, its stop)."""
    if report.state in _NOT_RUNNING:
        return
    where = "is down" if vm.host_id is None else "runs on another host"
    log.warning("host %s reported VM %s as %s, but the VM %s: report refused", host.name,
                vm.name, report.state.value, where,
                extra={"host": host.name, "vm": vm.name, "vm_id": vm.id})
    audit.record(session, f"Host {host.name} reported VM {vm.name} as {report.state.value}, but "
                 f"the VM {where}; the report was refused. If that host really runs the VM, "
                 "stop it there", code=audit.NODE_REPORT_REFUSED, severity=LogSeverity.WARNING,
                 vm_id=vm.id, host_id=host.id)


async def _external_vm(session: AsyncSession, host: Host, report: VmStatusReport) -> None:
    """A domain Overt did not create: shown as an external VM while it runs."""
    if report.state in (VmState.GONE, VmState.SHUTOFF, VmState.CRASHED):
        existing = await _external_by_name(session, host, report.name)
        if existing is not None:
            await session.delete(existing)
        return
    existing = await _external_by_name(session, host, report.name)
    if existing is not None:
        existing.status = vm_status_of(report.state)
        return
    name = await _free_name(session, report.name)
    vm = Vm(id=report.vm_id or uuid.uuid4(), name=name, cluster_id=host.cluster_id,
            template_id=BLANK_TEMPLATE_ID, memory_mib=0, origin="external",
            status=vm_status_of(report.state), host_id=host.id,
            description=f"External VM found running on host {host.name}")
    session.add(vm)
    audit.record(session, f"VM {report.name}, which Overt did not create, runs on host "
                 f"{host.name}; it is shown as an external VM", code=audit.VM_EXTERNAL,
                 severity=LogSeverity.WARNING, vm_id=vm.id, host_id=host.id)


async def _free_name(session: AsyncSession, wanted: str) -> str:
    """A VM name nobody has (names are unique): the domain's own, else external-NAME, else
    external-NAME-2, ... (another host may run a domain of the same name)."""
    base = f"external-{wanted}"[:60]
    candidates = [wanted, f"external-{wanted}"[:64]] + [f"{base}-{n}" for n in range(2, 1000)]
    for candidate in candidates:
        if (await session.execute(select(Vm.id).where(Vm.name == candidate))).first() is None:
            return candidate
    return f"{base[:27]}-{uuid.uuid4()}"


async def _external_by_name(session: AsyncSession, host: Host, name: str) -> Vm | None:
    """The external VM shown for domain `name` on this host, under any name _free_name gives."""
    base = f"external-{name}"[:60]
    found = (await session.execute(select(Vm).where(
        Vm.origin == "external", Vm.host_id == host.id,
        or_(Vm.name.in_([name, f"external-{name}"[:64]]),
            Vm.name.like(f"{_like_escaped(base)}-%", escape="\\"))))).scalars().all()
    return next((vm for vm in found if _shows_domain(vm.name, name)), None)


def _shows_domain(vm_name: str, domain: str) -> bool:
    """Whether an external VM's name is one _free_name gives for that domain."""
    base = f"external-{domain}"[:60]
    return vm_name in (domain, f"external-{domain}"[:64]) or \
        re.fullmatch(re.escape(base) + r"-\d+", vm_name) is not None


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def _being_ended(session: AsyncSession, vm_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """Of the locked VMs `vm_ids`, those held by a job that ends them (stop, shutdown)."""
    if not vm_ids:
        return set()
    return set((await session.execute(select(Lock.resource_id).join(
        Job, Lock.job_id == Job.id).where(
        Lock.resource_type == "vm", Lock.resource_id.in_(list(vm_ids)),
        Job.action.in_(list(_ENDING))))).scalars())


async def _started(session: AsyncSession, host: Host, report: VmStatusReport) -> bool:
    """A VM being launched that the report shows running: its start has happened (it ran
    nowhere when it was placed), whatever the report's age; the job waiting for it may
    have lost the start's event with an agent that restarted. Likewise a migrating VM
    that its destination runs: the handover has happened."""
    vm = await session.get(Vm, report.vm_id) if report.vm_id is not None else None
    if vm is None:
        return False
    if vm.status == VmStatus.MIGRATING and vm.migration_host_id == host.id:
        return report.state is VmState.RUNNING
    return vm.status in _LAUNCHING and report.state in (VmState.RUNNING, VmState.PAUSED)


async def reconcile(session: AsyncSession, host: Host, state: HostState) -> None:
    """Apply a node's full state: every VM it runs, and the VMs it no longer runs."""
    reported_ids = {report.vm_id for report in state.vms if report.vm_id is not None}
    reported_names = {report.name for report in state.vms}
    believed = (await session.execute(select(Vm).where(
        Vm.host_id == host.id, Vm.status.in_(ON_HOST)))).scalars().all()
    # The VMs of both lists and their job locks in two queries: a node runs many VMs.
    concerned = reported_ids | {vm.id for vm in believed}
    # Held: the session's own references to what it loaded are weak.
    reported = (await session.execute(select(Vm).where(Vm.id.in_(list(reported_ids))))
                ).scalars().all() if reported_ids else []
    locked = set((await session.execute(select(Lock.resource_id).where(
        Lock.resource_type == "vm", Lock.resource_id.in_(list(concerned))))).scalars()) \
        if concerned else set()
    deferred = False
    unreported = {vm.id for vm in believed if vm.id not in reported_ids}
    being_ended = await _being_ended(session, unreported & locked)
    for report in state.vms:
        if report.vm_id in locked and not await _started(session, host, report):
            # A job acts on it: its own events settle it, and this report may be older
            # than the job's action. Asked again once the job is done.
            deferred = True
            continue
        await apply_vm_report(session, host, report, locked=locked)
    for vm in believed:
        if vm.id in reported_ids or (vm.origin == "external" and any(
                _shows_domain(vm.name, domain) for domain in reported_names)):
            continue
        if vm.id in being_ended:  # the node runs it no more, as the job ending it expects
            _runs_nowhere(vm, VmStatus.DOWN)
            await release_on_end(session, vm.id, VmStatus.DOWN)
            continue
        if vm.id in locked:
            deferred = True
            continue  # a job is acting on it: it is settled once the job is done
        if vm.origin == "external":
            await session.delete(vm)
            continue
        log.warning("VM %s was %s on host %s but the host does not run it", vm.name, vm.status,
                    host.name, extra={"host": host.name, "vm": vm.name, "vm_id": vm.id})
        audit.record(session, f"VM {vm.name} is down: host {host.name} does not run it any more",
                     code=audit.VM_LOST, severity=LogSeverity.WARNING, vm_id=vm.id,
                     host_id=host.id)
        _runs_nowhere(vm, VmStatus.DOWN)
    host.free_memory_mib = state.free_memory_mib
    host.needs_resync = deferred
    if state.networks is not None:
        host.reported_networks = [n.model_dump(mode="json") for n in state.networks]
    if state.bonds is not None:
        host.reported_bonds = [b.model_dump(mode="json") for b in state.bonds]
    mark_host_up(session, host)
    await judge_host(session, host)
    del reported
