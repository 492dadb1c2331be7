"""VMs: create, change, remove, and the lifecycle actions (each a job)."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import (
    Cluster,
    Disk,
    DiskAttachment,
    Host,
    InstanceType,
    Job,
    StorageDomain,
    Template,
    User,
    Vm,
    VmNic,
)
from overt.engine.jobs.kinds import (
    CancelMigration,
    CloneVm,
    MigrateVm,
    RebootVm,
    RemoveVm,
    ShutdownVm,
    StartVm,
    StopVm,
    SuspendVm,
    VmJob,
)
from overt.engine.model import migration_options
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.model.initialization import Initialization, replaced_initialization
from overt.engine.model.migration_options import MigrationOptions
from overt.engine.model.operating_systems import operating_system
from overt.engine.model.placement_policy import migration_refusal
from overt.engine.model.status import (
    BootDevice,
    DiskStatus,
    HostStatus,
    StorageDomainStatus,
    StorageErrorResume,
    TemplateStatus,
    VmStatus,
)
from overt.engine.model.vm_actions import VmAction, check_vm_action
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref
from overt.engine.queries.vm_spec import required_host
from overt.engine.scheduler.loads import host_loads, reserve_host
from overt.engine.services import cdroms
from overt.engine.services.devices import add_disk_attachment, thin_copy
from overt.engine.services.disk_copies import (
    CopyTarget,
    attachments_of,
    check_sources,
    new_copy,
)
from overt.engine.services.inputs import NicInput, RunOnce, VmInput
from overt.engine.services.jobs import JobSubmitter
from overt.engine.services.vm_leases import set_vm_lease
from overt.engine.services.vm_nics import add_nic
from overt.engine.services.vm_placement import set_placement_policy
from overt.protocol.vm import BiosType

MIB = 1 << 20
MAX_MEMORY_MIB = 4 * 1024 * 1024
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_vm_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise InvalidInput(
            f"VM name {name!r} is not valid: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit")


def memory_mib(memory_bytes: int) -> int:
    if memory_bytes <= 0:
        raise InvalidInput(f"vm.memory must be a positive number of bytes, not {memory_bytes}")
    if memory_bytes % MIB:
        raise InvalidInput("vm.memory must be a whole number of MiB (a multiple of 1048576)")
    mib = memory_bytes // MIB
    if not 16 <= mib <= MAX_MEMORY_MIB:
        raise InvalidInput(f"vm.memory must be between 16 MiB and {MAX_MEMORY_MIB} MiB")
    return mib


def _check_topology(value: int | None, what: str) -> None:
    if value is not None and not 1 <= value <= 64:
        raise InvalidInput(f"vm.cpu.topology.{what} must be between 1 and 64, not {value}")


def check_os_type(name: str) -> str:
    """oVirt's id of a known operating system type, else 400."""
    if operating_system(name) is None:
        raise InvalidInput(f"vm.os.type {name!r} is not a known operating system; see "
                           "/operatingsystems for the types")
    return name


def _boot(devices: list[str]) -> list[str]:
    allowed = {d.value for d in BootDevice}
    for device in devices:
        if device not in allowed:
            raise InvalidInput(f"boot device {device!r} is not one of {', '.join(sorted(allowed))}")
    return devices


def check_bios(value: str, what: str = "vm") -> str:
    """oVirt's bios.type, one of its four values (UEFI: `q35_ovmf`, `q35_secure_boot`)."""
    allowed = [b.value for b in BiosType]
    if value not in allowed:
        raise InvalidInput(f"{what}.bios.type {value!r} is not one of {', '.join(allowed)}")
    return value


MAX_HA_PRIORITY = 100


async def add_vm(session: AsyncSession, jobs: JobSubmitter, data: VmInput, user: User, *,
                 clone: bool = False) -> Vm:
    """A VM from a template: its disks thin copies of the template's (a qcow2 layer over
    each), or with `clone` (oVirt's `?clone=true`) independent full copies, made by a job."""
    if not data.name:
        raise InvalidInput("vm.name is required")
    check_vm_name(data.name)
    if await lookup.name_taken(session, Vm, data.name):
        raise Conflict(f"Cannot add VM. The name {data.name!r} is already in use.")
    cluster = await lookup.resolve(session, Cluster, data.cluster, "vm.cluster")
    template = await lookup.resolve(session, Template, data.template or lookup.Ref(
        id=BLANK_TEMPLATE_ID), "vm.template")
    if template.status != TemplateStatus.OK:
        raise Conflict(f"Cannot add VM. Template {template.name} is {template.status} "
                       "(its disks are not ready).")
    for value, what in ((data.sockets, "sockets"), (data.cores, "cores"),
                        (data.threads, "threads")):
        _check_topology(value, what)
    migration = migration_options.check(data.migration or MigrationOptions(), "vm.migration")
    kind = await lookup.resolve(session, InstanceType, data.instance_type, "vm.instance_type") \
        if data.instance_type is not None else None
    vm = Vm(
        id=uuid.uuid4(), name=data.name, description=data.description or "",
        comment=data.comment or "", cluster_id=cluster.id, template_id=template.id,
        memory_mib=memory_mib(data.memory_bytes) if data.memory_bytes is not None
        else template.memory_mib,
        cpu_sockets=data.sockets or template.cpu_sockets, cpu_cores=data.cores or template.cpu_cores,
        cpu_threads=data.threads or template.cpu_threads, os_type=check_os_type(data.os_type) if data.os_type
        else template.os_type,
        boot_devices=_boot(data.boot_devices) if data.boot_devices else ["hd"],
        # oVirt: the template's firmware unless the VM asks for its own
        bios_type=check_bios(data.bios_type) if data.bios_type else template.bios_type,
        # oVirt: a VM without initialization of its own takes its template's
        initialization=data.initialization.to_json() if data.initialization
        else template.initialization,
        high_availability=bool(data.high_availability),
        ha_priority=_ha_priority(data.ha_priority, 1), status=VmStatus.DOWN,
        storage_error_resume_behaviour=_resume_behaviour(
            data.storage_error_resume_behaviour, StorageErrorResume.AUTO_RESUME),
        migration=migration.to_json(),
        migration_downtime_ms=migration_options.check_downtime(data.migration_downtime_ms,
                                                               "vm"))
    if kind is not None:  # the instance type's hardware, as oVirt gives it
        vm.instance_type_id = kind.id
        vm.memory_mib = kind.memory_mib
        vm.cpu_sockets, vm.cpu_cores = kind.cpu_sockets, kind.cpu_cores
        vm.cpu_threads = kind.cpu_threads
    await set_placement_policy(session, vm, hosts=data.placement_hosts,
                               affinity=data.placement_affinity)
    await set_vm_lease(session, vm, data.lease, unset=False)
    if clone:
        vm.template_id = BLANK_TEMPLATE_ID  # independent of the template, which may go
    session.add(vm)
    await session.flush()
    template_disks = await attachments_of(session, template_id=template.id)
    if clone:
        await _clone_disks(session, jobs, vm, template_disks, user,
                           CloneVm(vm_id=vm.id, template_id=template.id),
                           f"Creating VM {vm.name} as a clone of template {template.name}")
    else:
        for attachment, base in template_disks:
            await thin_copy(session, jobs, vm, base, attachment, user)
    for requested in data.disk_attachments:
        await add_disk_attachment(session, jobs, vm, requested, user)
    for nic in data.nics:
        await add_nic(session, jobs, vm, nic, user)
    audit.record(session, f"VM {vm.name} was created by {user.user_name}", code=audit.VM_CREATED,
                 vm_id=vm.id, cluster_id=cluster.id, user_id=user.id)
    return vm


async def _clone_disks(session: AsyncSession, jobs: JobSubmitter, vm: Vm,
                       sources: list[tuple[DiskAttachment, Disk]], user: User, spec: CloneVm,
                       description: str) -> Job:
    what = f"clone VM {vm.name}"
    check_sources(what, [disk for _a, disk in sources])
    copies = []
    for attachment, disk in sources:
        copy, planned = await new_copy(session, what, disk, CopyTarget(),
                                       name=f"{vm.name}_{disk.name}")
        session.add(DiskAttachment(disk_id=copy.id, vm_id=vm.id, interface=attachment.interface,
                                   bootable=attachment.bootable, active=attachment.active,
                                   read_only=attachment.read_only))
        copies.append(planned)
    return await jobs.submit(session, spec.model_copy(update={"copies": tuple(copies)}),
                             description=description, owner_id=user.id)


async def clone_vm(session: AsyncSession, jobs: JobSubmitter, vm_id: uuid.UUID, name: str | None,
                   user: User, correlation_id: str | None = None) -> Job:
    """oVirt's `clone` action: a new VM named `name` with the down VM's configuration and
    NICs (new MACs) and full copies of its disks, independent of the VM and its template."""
    source = await lookup.get(session, Vm, vm_id)
    if not name:
        raise InvalidInput("vm.name is required: the clone's name")
    check_vm_name(name)
    if await lookup.name_taken(session, Vm, name):
        raise Conflict(f"Cannot clone VM. The name {name!r} is already in use.")
    if source.status != VmStatus.DOWN:
        raise Conflict(f"Cannot clone VM {source.name}: it is {source.status}; it must be down.")
    clone = Vm(id=uuid.uuid4(), name=name, description=source.description,
               comment=source.comment, cluster_id=source.cluster_id,
               template_id=BLANK_TEMPLATE_ID, memory_mib=source.memory_mib,
               cpu_sockets=source.cpu_sockets, cpu_cores=source.cpu_cores,
               cpu_threads=source.cpu_threads, os_type=source.os_type,
               boot_devices=list(source.boot_devices), bios_type=source.bios_type,
               high_availability=source.high_availability, ha_priority=source.ha_priority,
               storage_error_resume_behaviour=source.storage_error_resume_behaviour,
               placement_hosts=list(source.placement_hosts),
               placement_affinity=source.placement_affinity,
               migration=dict(source.migration),
               migration_downtime_ms=source.migration_downtime_ms,
               initialization=source.initialization, status=VmStatus.DOWN)
    session.add(clone)
    await session.flush()
    job = await _clone_disks(session, jobs, clone, await attachments_of(session, vm_id=source.id),
                             user, CloneVm(vm_id=clone.id, source_vm_id=source.id),
                             f"Cloning VM {source.name} as {name}")
    if correlation_id is not None:
        job.correlation_id = correlation_id
    for nic in (await session.execute(select(VmNic).where(VmNic.vm_id == source.id)
                                      .order_by(VmNic.name))).scalars().all():
        await add_nic(session, jobs, clone, NicInput(
            name=nic.name, interface=nic.interface, linked=nic.linked, plugged=nic.plugged,
            vnic_profile=Ref(id=nic.vnic_profile_id) if nic.vnic_profile_id else None), user)
    audit.record(session, f"VM {name} is being cloned from VM {source.name} by {user.user_name}",
                 code=audit.VM_CREATED, vm_id=clone.id, cluster_id=clone.cluster_id,
                 user_id=user.id)
    return job


async def update_vm(session: AsyncSession, vm_id: uuid.UUID, data: VmInput, user: User
                    ) -> Vm:
    vm = await lookup.get(session, Vm, vm_id, for_update=True)
    _update_migration(vm, data)
    if data.name is not None and data.name != vm.name:
        check_vm_name(data.name)
        if await lookup.name_taken(session, Vm, data.name, other_than=vm.id):
            raise Conflict(f"Cannot edit VM. The name {data.name!r} is already in use.")
        if vm.status != VmStatus.DOWN:
            raise Conflict(f"Cannot rename VM {vm.name} while it is {vm.status}.")
        vm.name = data.name
    if data.cluster is not None:
        cluster = await lookup.resolve(session, Cluster, data.cluster, "vm.cluster")
        if cluster.id != vm.cluster_id:
            if vm.status != VmStatus.DOWN:
                raise Conflict(f"Cannot change the cluster of VM {vm.name} while it runs.")
            vm.cluster_id = cluster.id
    changed = False
    if data.description is not None:
        vm.description = data.description
    if data.comment is not None:
        vm.comment = data.comment
    if data.memory_bytes is not None and memory_mib(data.memory_bytes) != vm.memory_mib:
        vm.memory_mib, changed = memory_mib(data.memory_bytes), True
    for value, what, attr in ((data.sockets, "sockets", "cpu_sockets"),
                              (data.cores, "cores", "cpu_cores"),
                              (data.threads, "threads", "cpu_threads")):
        _check_topology(value, what)
        if value is not None and value != getattr(vm, attr):
            setattr(vm, attr, value)
            changed = True
    if data.instance_type is not None:
        changed |= await _apply_instance_type(session, vm, data.instance_type)
    if data.os_type is not None:
        vm.os_type = check_os_type(data.os_type)
    if data.boot_devices:
        vm.boot_devices, changed = _boot(data.boot_devices), True
    if data.bios_type and check_bios(data.bios_type) != vm.bios_type:
        vm.bios_type, changed = check_bios(data.bios_type), True
    if data.initialization is not None:
        vm.initialization, changed = replaced_initialization(vm.initialization, data.initialization), True
    if data.high_availability is not None:
        vm.high_availability = data.high_availability
    if await set_vm_lease(session, vm, data.lease, unset=data.lease_unset):
        changed = True
    vm.ha_priority = _ha_priority(data.ha_priority, vm.ha_priority)
    vm.storage_error_resume_behaviour = _resume_behaviour(
        data.storage_error_resume_behaviour, StorageErrorResume(vm.storage_error_resume_behaviour))
    await set_placement_policy(session, vm, hosts=data.placement_hosts,
                               affinity=data.placement_affinity)
    if changed:
        vm.spec_version += 1  # a running VM gets the change at its next start
    audit.record_vm_change(session, f"VM {vm.name} configuration was updated by "
                           f"{user.user_name}", code=audit.VM_UPDATED, vm=vm, user=user)
    return vm


async def _apply_instance_type(session: AsyncSession, vm: Vm, ref: lookup.Ref) -> bool:
    """oVirt's instance type on an edit: the type's memory and CPU topology replace the
    VM's (as at creation); a running VM gets them at its next start. Whether it changed."""
    kind = await lookup.resolve(session, InstanceType, ref, "vm.instance_type")
    before = (vm.memory_mib, vm.cpu_sockets, vm.cpu_cores, vm.cpu_threads)
    vm.instance_type_id = kind.id
    vm.memory_mib = kind.memory_mib
    vm.cpu_sockets, vm.cpu_cores, vm.cpu_threads = \
        kind.cpu_sockets, kind.cpu_cores, kind.cpu_threads
    return before != (vm.memory_mib, vm.cpu_sockets, vm.cpu_cores, vm.cpu_threads)


def _update_migration(vm: Vm, data: VmInput) -> None:
    """The VM's migration options and max downtime: taken by its next migration."""
    if data.migration_downtime_ms is not None:
        vm.migration_downtime_ms = migration_options.check_downtime(
            data.migration_downtime_ms, "vm")
    if data.migration is not None:
        vm.migration = migration_options.check(MigrationOptions.from_json(vm.migration).updated(
            data.migration), "vm.migration").to_json()


async def _action_job(session: AsyncSession, jobs: JobSubmitter, spec: VmJob,
                      action: VmAction, description: str, user: User, *,
                      desired: VmStatus | None = None,
                      correlation_id: str | None = None) -> Job:
    """Check the action against the VM's status, record its job with the job's locks, and
    record what the user now wants of the VM (`desired`): the job's intent, kept apart
    from the status the monitor observes."""
    vm = await lookup.get(session, Vm, spec.vm_id, for_update=True)
    check_vm_action(action, vm.status, vm_name=vm.name)
    if vm.origin == "external" and action is not VmAction.STOP:
        raise Conflict(f"VM {vm.name} is external (not created by Overt); it can only be stopped")
    job = await jobs.submit(session, spec, description=f"{description} {vm.name}",
                            owner_id=user.id, correlation_id=correlation_id)
    if desired is not None:
        vm.desired_status = desired.value
    return job


def _ha_priority(priority: int | None, current: int) -> int:
    """oVirt's priority range: 0 (lowest) to 100 (the portal's High)."""
    if priority is None:
        return current
    if not 0 <= priority <= MAX_HA_PRIORITY:
        raise InvalidInput(f"vm.high_availability.priority must be between 0 and "
                           f"{MAX_HA_PRIORITY}, not {priority}")
    return priority


def _resume_behaviour(value: str | None, current: StorageErrorResume) -> StorageErrorResume:
    """oVirt's storage_error_resume_behaviour; `kill` (which oVirt pairs with restarting a
    highly available VM elsewhere) is refused, not accepted and ignored."""
    if value is None:
        return current
    if value == StorageErrorResume.KILL:
        raise InvalidInput("vm.storage_error_resume_behaviour 'kill' is not supported: use "
                           "'auto_resume' (resumed once its host reaches the storage again) "
                           "or 'leave_paused'")
    try:
        return StorageErrorResume(value)
    except ValueError:
        raise InvalidInput(f"vm.storage_error_resume_behaviour must be 'auto_resume' or "
                           f"'leave_paused', not {value!r}") from None


async def start_vm(session: AsyncSession, jobs: JobSubmitter, vm_id: uuid.UUID, user: User,
                   correlation_id: str | None = None, *, use_cloud_init: bool | None = None,
                   initialization: Initialization | None = None,
                   run_once: RunOnce | None = None) -> Job:
    """Run a VM. The scheduler places it here, once: the chosen host is reserved by
    recording the VM on it (waiting for launch, or restoring) in this transaction, so a
    concurrent start sees the host's memory taken; the job's compensation releases it.

    cloud-init: the VM's stored initialization is given to every run unless
    `use_cloud_init` is false; an `initialization` given here serves this run only
    (oVirt's run once)."""
    vm = await lookup.get(session, Vm, vm_id)
    if use_cloud_init and initialization is None and not vm.initialization:
        raise InvalidInput(f"Cannot run VM {vm.name} with cloud-init: it has no initialization; "
                           "give vm.initialization with the start, or set it on the VM")
    once = run_once or RunOnce()  # checked first: bad input changes nothing
    boot = _boot(once.boot) if once.boot else None
    cdrom = (await cdroms.iso_disk(session, vm, once.cdrom_file)).id if once.cdrom_file \
        else None
    not_ready = (await session.execute(
        select(func.count()).select_from(Disk).join(DiskAttachment, DiskAttachment.disk_id == Disk.id)
        .where(DiskAttachment.vm_id == vm_id, DiskAttachment.active.is_(True),
               Disk.status != DiskStatus.OK))).scalar_one()
    if not_ready:
        raise Conflict(f"Cannot run VM {vm.name}: {not_ready} of its disks are not ready "
                       "(locked while being created, or illegal).")
    unreachable = (await session.execute(
        select(StorageDomain.name).join(Disk, Disk.storage_domain_id == StorageDomain.id)
        .join(DiskAttachment, DiskAttachment.disk_id == Disk.id)
        .where(DiskAttachment.vm_id == vm_id, DiskAttachment.active.is_(True),
               StorageDomain.status == StorageDomainStatus.INACTIVE))).scalars().first()
    if unreachable is not None:
        raise Conflict(f"Cannot run VM {vm.name}: its disks' Storage Domain {unreachable} is "
                       "inactive (no host reaches it).")
    status = vm.status
    check_vm_action(VmAction.START, status, vm_name=vm.name)
    host_id, launching = None, status
    if status is VmStatus.SUSPENDED and vm.saved_state_host_id is not None:
        host_id = await reserve_host(session, vm, required=vm.saved_state_host_id,
                                     required_reason="the VM's saved memory is on another "
                                     "host's storage")
        launching = VmStatus.RESTORING_STATE
    elif status in (VmStatus.DOWN, VmStatus.SUSPENDED):
        required, why = await required_host(session, vm)
        if cdrom is not None and required is None:  # a run-once ISO on a host's own storage
            required, why = await cdroms.iso_host(session, cdrom)
        host_id = await reserve_host(session, vm, required=required, required_reason=why)
        launching = VmStatus.WAIT_FOR_LAUNCH
    job = await _action_job(session, jobs, StartVm(
        vm_id=vm_id, host_id=host_id, use_cloud_init=use_cloud_init,
        initialization=initialization.to_json() if initialization is not None else None,
        boot=boot, cdrom_given=once.cdrom_given, cdrom_disk_id=cdrom),
                            VmAction.START, "Launching VM", user, desired=VmStatus.UP,
                            correlation_id=correlation_id)
    if vm.status != status:  # the VM row is locked now; it changed since it was read
        raise Conflict(f"Cannot run VM {vm.name}: it became {vm.status} meanwhile; try again.")
    if host_id is not None:
        vm.host_id, vm.status = host_id, launching
    return job


async def stop_vm(session: AsyncSession, jobs: JobSubmitter, vm_id: uuid.UUID, user: User,
                  reason: str = "", correlation_id: str | None = None) -> Job:
    return await _action_job(session, jobs, StopVm(vm_id=vm_id, reason=reason), VmAction.STOP,
                             "Stopping VM", user, desired=VmStatus.DOWN,
                             correlation_id=correlation_id)


async def shutdown_vm(session: AsyncSession, jobs: JobSubmitter, vm_id: uuid.UUID, user: User,
                      reason: str = "", correlation_id: str | None = None) -> Job:
    return await _action_job(session, jobs, ShutdownVm(vm_id=vm_id, reason=reason),
                             VmAction.SHUTDOWN, "Shutting down VM", user, desired=VmStatus.DOWN,
                             correlation_id=correlation_id)


async def reboot_vm(session: AsyncSession, jobs: JobSubmitter, vm_id: uuid.UUID, user: User,
                    correlation_id: str | None = None) -> Job:
    return await _action_job(session, jobs, RebootVm(vm_id=vm_id), VmAction.REBOOT,
                             "Rebooting VM", user, correlation_id=correlation_id)


async def suspend_vm(session: AsyncSession, jobs: JobSubmitter, vm_id: uuid.UUID, user: User,
                     correlation_id: str | None = None) -> Job:
    return await _action_job(session, jobs, SuspendVm(vm_id=vm_id), VmAction.SUSPEND,
                             "Suspending VM", user, desired=VmStatus.SUSPENDED,
                             correlation_id=correlation_id)


async def remove_vm(session: AsyncSession, jobs: JobSubmitter, vm_id: uuid.UUID, user: User,
                    *, detach_only: bool = False, correlation_id: str | None = None) -> Job:
    vm = await lookup.get(session, Vm, vm_id)
    if vm.origin == "external" and vm.status != VmStatus.DOWN:
        raise Conflict(f"Cannot remove VM {vm.name}: it is an external VM that is running")
    return await _action_job(session, jobs, RemoveVm(vm_id=vm_id, detach_only=detach_only),
                             VmAction.REMOVE, "Removing VM", user, correlation_id=correlation_id)


async def migrate_vm(session: AsyncSession, jobs: JobSubmitter, vm_id: uuid.UUID, user: User,
                     *, host: Ref | None = None, correlation_id: str | None = None) -> Job:
    """Live-migrate a running VM to `host`, or to the host of its cluster the scheduler
    chooses (never its own). The destination is reserved here, as a start reserves its
    host: the VM is recorded as migrating there (`migration_host_id`) in this transaction,
    so its memory counts on both hosts until the monitor sees it arrive."""
    vm = await lookup.get(session, Vm, vm_id)
    status = vm.status
    check_vm_action(VmAction.MIGRATE, status, vm_name=vm.name)
    if vm.origin == "external":
        raise Conflict(f"Cannot migrate VM {vm.name}: it is external (not created by Overt)")
    if vm.host_id is None:
        raise Conflict(f"Cannot migrate VM {vm.name}: it runs on no host")
    source = await lookup.get(session, Host, vm.host_id)
    pinned, why = await required_host(session, vm)
    if pinned is not None:
        raise Conflict(f"Cannot migrate VM {vm.name}: {why}")
    refusal = migration_refusal(vm.name, vm.placement_affinity, by_engine=False)
    if refusal is not None:
        raise Conflict(f"Cannot migrate VM {vm.name}: {refusal}")
    if host is not None:
        target = await lookup.resolve(session, Host, host, "the destination host")
        _check_destination(vm, source, target)
        destination = await reserve_host(session, vm, required=target.id, leaving=source.id,
                                         required_reason="another host was asked for")
    else:
        await _check_other_host(session, vm, source)
        destination = await reserve_host(session, vm, leaving=source.id)
    job = await _action_job(session, jobs, MigrateVm(vm_id=vm_id, source_host_id=source.id,
                                                     host_id=destination),
                            VmAction.MIGRATE, "Migrating VM", user,
                            correlation_id=correlation_id)
    if vm.status != status or vm.host_id != source.id:
        raise Conflict(f"Cannot migrate VM {vm.name}: it changed meanwhile; try again.")
    vm.status, vm.migration_host_id = VmStatus.MIGRATING, destination
    target_host = await lookup.get(session, Host, destination)
    audit.record(session, f"Migration of VM {vm.name} from host {source.name} to host "
                 f"{target_host.name} was started", code=audit.VM_MIGRATION_STARTED,
                 vm_id=vm.id, host_id=source.id, cluster_id=vm.cluster_id, job_id=job.id,
                 user_id=user.id)
    return job


def _check_destination(vm: Vm, source: Host, target: Host) -> None:
    """oVirt's refusals for a destination asked for: the VM's own host, a host of another
    cluster, a host that is not up."""
    if target.id == source.id:
        raise Conflict(f"Cannot migrate VM {vm.name}: it already runs on host {target.name}, "
                       "the destination asked for")
    if target.cluster_id != vm.cluster_id:
        raise Conflict(f"Cannot migrate VM {vm.name} to host {target.name}: the host is in "
                       "another cluster than the VM")
    if target.status != HostStatus.UP:
        raise Conflict(f"Cannot migrate VM {vm.name} to host {target.name}: the host is "
                       f"{target.status.replace('_', ' ')}")


async def _check_other_host(session: AsyncSession, vm: Vm, source: Host) -> None:
    """oVirt's refusal for a VM with nowhere else to go in its cluster."""
    loads = await host_loads(session, vm.cluster_id, excluding_vm=vm.id)
    if all(load.host_id == source.id for load in loads):
        raise Conflict(f"Cannot migrate VM {vm.name}: its cluster has no other host")


async def cancel_migration(session: AsyncSession, jobs: JobSubmitter, vm_id: uuid.UUID,
                           user: User, correlation_id: str | None = None) -> Job:
    """oVirt's cancelmigration: the source's node aborts the migration in flight."""
    vm = await lookup.get(session, Vm, vm_id)
    if vm.status != VmStatus.MIGRATING or vm.host_id is None:
        raise Conflict(f"Cannot cancel the migration of VM {vm.name}: the VM is not migrating "
                       f"(it is {vm.status.replace('_', ' ')}).")
    return await jobs.submit(session, CancelMigration(vm_id=vm_id, host_id=vm.host_id),
                             description=f"Cancelling the migration of VM {vm.name}",
                             owner_id=user.id, correlation_id=correlation_id)
