"""Templates: imported from a disk image or made from a VM (its disks copied); VMs are
thin copies of them or full clones; removed when no VM is based on them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import Disk, DiskAttachment, Job, StorageDomain, Template, User, Vm
from overt.engine.jobs.kinds import CloneVm, CreateDisk, CreateTemplate, RemoveDisk
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.model.initialization import Initialization, replaced_initialization
from overt.engine.model.operating_systems import operating_system
from overt.engine.model.status import DiskFormat, DiskStatus, TemplateStatus, VmStatus
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref
from overt.engine.services.disk_copies import CopyTarget, attachments_of, check_sources, new_copy
from overt.engine.services.jobs import JobSubmitter
from overt.engine.services.vms import check_bios, check_vm_name, memory_mib


async def import_image_template(
    session: AsyncSession, jobs: JobSubmitter, *, name: str, image_path: str, size_bytes: int,
    storage_domain: StorageDomain, user: User, memory_mib: int = 256, description: str = "",
    os_type: str = "other_linux",
) -> Template:
    """A template whose one bootable disk is a copy of an image on the storage's host."""
    if await lookup.name_taken(session, Template, name):
        raise Conflict(f"Cannot add Template. The name {name!r} is already in use.")
    template = Template(id=uuid.uuid4(), name=name, description=description,
                        memory_mib=memory_mib, os_type=os_type,
                        status=TemplateStatus.LOCKED)
    session.add(template)
    await session.flush()
    disk_id = uuid.uuid4()
    disk = Disk(id=disk_id, name=f"{name}_disk1", storage_domain_id=storage_domain.id,
                provisioned_size=size_bytes, format=DiskFormat.COW.value, sparse=True,
                status=DiskStatus.LOCKED, image_path=f"templates/{disk_id}.qcow2",
                template_id=template.id)
    session.add(disk)
    await session.flush()
    session.add(DiskAttachment(disk_id=disk.id, template_id=template.id, interface="virtio",
                               bootable=True, active=True))
    await jobs.submit(session, CreateDisk(disk_id=disk.id, copy_from=image_path,
                                          template_id=template.id),
                      description=f"Importing template {name}", owner_id=user.id)
    audit.record(session, f"Template {name} is being imported by {user.user_name}",
                 code=audit.TEMPLATE_IMPORTED, user_id=user.id,
                 storage_domain_id=storage_domain.id)
    return template


async def create_template_from_vm(
    session: AsyncSession, jobs: JobSubmitter, *, name: str | None, vm: Ref | None,
    user: User, description: str | None = None,
    targets: dict[uuid.UUID, CopyTarget] | None = None,
    default_target: CopyTarget | None = None,
    initialization: Initialization | None = None, bios_type: str | None = None,
    seal: bool = False,
) -> Template:
    """oVirt's template from a VM: the down VM's configuration, and full (flattened) copies
    of its disks on the same domain or the one asked for per disk (`targets`, by the VM's
    disk id) or for all (`default_target`). The template is `locked` until its job ends.
    Its cloud-init is the `initialization` given, else the VM's; its bios type likewise.
    `seal`: its boot disk's copy is sealed (virt-sysprep), refused for Windows as in oVirt."""
    what = "add Template"
    if not name:
        raise InvalidInput("template.name is required")
    check_vm_name(name)
    if bios_type is not None:
        check_bios(bios_type, "template")
    source = await lookup.resolve(session, Vm, vm, "template.vm")
    if await lookup.name_taken(session, Template, name):
        raise Conflict(f"Cannot add Template. The name {name!r} is already in use.")
    if source.status != VmStatus.DOWN:
        raise Conflict(f"Cannot add Template. VM {source.name} is {source.status}: it must be "
                       "down.")
    os_family = getattr(operating_system(source.os_type), "family", "Other")
    if seal and os_family == "Windows":
        raise Conflict(f"Cannot add Template. VM {source.name} runs Windows: sealing "
                       "(virt-sysprep) is for Linux guests only.")
    attached = await attachments_of(session, vm_id=source.id)
    check_sources(what, [disk for _a, disk in attached])
    unknown = set(targets or {}) - {disk.id for _a, disk in attached}
    if unknown:
        raise InvalidInput(f"template.disk_attachments names disk(s) {sorted(map(str, unknown))} "
                           f"that VM {source.name} does not have")
    template = Template(id=uuid.uuid4(), name=name,
                        description=source.description if description is None else description,
                        cluster_id=source.cluster_id, memory_mib=source.memory_mib,
                        cpu_sockets=source.cpu_sockets, cpu_cores=source.cpu_cores,
                        cpu_threads=source.cpu_threads, os_type=source.os_type,
                        bios_type=bios_type or source.bios_type,
                        # its root password sealed
                        initialization=source.initialization if initialization is None
                        else replaced_initialization(None, initialization),
                        status=TemplateStatus.LOCKED)
    session.add(template)
    await session.flush()
    copies = []
    for attachment, disk in attached:
        target = (targets or {}).get(disk.id) or default_target or CopyTarget()
        copy, planned = await new_copy(session, what, disk, target, name=disk.name,
                                       template_id=template.id)
        session.add(DiskAttachment(disk_id=copy.id, template_id=template.id,
                                   interface=attachment.interface, bootable=attachment.bootable,
                                   active=attachment.active))
        copies.append(planned)
    await jobs.submit(session, CreateTemplate(vm_id=source.id, template_id=template.id,
                                              copies=tuple(copies), seal=seal),
                      description=f"Creating template {name} from VM {source.name}",
                      owner_id=user.id)
    audit.record(session, f"Template {name} is being created from VM {source.name} by "
                 f"{user.user_name}", code=audit.TEMPLATE_ADDING, vm_id=source.id,
                 cluster_id=source.cluster_id, user_id=user.id)
    return template


@dataclass(frozen=True)
class TemplateEdit:
    """What `PUT /templates/{id}` may change (None: unchanged)."""

    name: str | None = None
    description: str | None = None
    memory_bytes: int | None = None
    initialization: Initialization | None = None  # checked and sealed already
    bios_type: str | None = None


async def update_template(session: AsyncSession, template_id: uuid.UUID, edit: TemplateEdit,
                          user: User) -> Template:
    """oVirt's template edit: its name, description, memory, bios type and cloud-init,
    which VMs made from it afterwards take (VMs made before keep theirs, as in oVirt)."""
    template = await lookup.get(session, Template, template_id, for_update=True)
    if edit.bios_type is not None:
        check_bios(edit.bios_type, "template")
    if template.status == TemplateStatus.LOCKED:
        raise Conflict(f"Cannot edit Template. Template {template.name} is locked (its disks "
                       "are being made); try again when it is ok.")
    if edit.name is not None and edit.name != template.name:
        if template.id == BLANK_TEMPLATE_ID:
            raise Conflict("Cannot edit Template. The Blank template cannot be renamed.")
        check_vm_name(edit.name)
        if await lookup.name_taken(session, Template, edit.name, other_than=template.id):
            raise Conflict(f"Cannot edit Template. The name {edit.name!r} is already in use.")
        template.name = edit.name
    if edit.description is not None:
        template.description = edit.description
    if edit.memory_bytes is not None:
        template.memory_mib = memory_mib(edit.memory_bytes)
    if edit.bios_type is not None:
        template.bios_type = edit.bios_type
    if edit.initialization is not None:
        template.initialization = replaced_initialization(template.initialization,
                                                          edit.initialization)
    audit.record(session, f"Template {template.name} was updated by {user.user_name}",
                 code=audit.TEMPLATE_UPDATED, user_id=user.id)
    return template


async def remove_template(session: AsyncSession, jobs: JobSubmitter, template_id: uuid.UUID,
                          user: User) -> None:
    """Remove a template and (by disk removal jobs) its disks; refused while VMs are based
    on it (its disks are the backing of their thin disks), as oVirt refuses."""
    template = await lookup.get(session, Template, template_id, for_update=True)
    if template.id == BLANK_TEMPLATE_ID:
        raise Conflict("Cannot delete Template. The Blank template cannot be removed.")
    if template.status == TemplateStatus.LOCKED:
        raise Conflict(f"Cannot delete Template. Template {template.name} is locked (its disks "
                       "are being made); try again when it is ok.")
    cloning = [job.description for job in (await session.execute(select(Job).where(
        Job.action == CloneVm.kind, Job.state.in_(["queued", "running"])))).scalars()
        if (job.params or {}).get("template_id") == str(template.id)]
    if cloning:
        raise Conflict(f"Cannot delete Template. Template {template.name} is being copied: "
                       f"{'; '.join(cloning)}.")
    users = (await session.execute(select(Vm.name).where(Vm.template_id == template.id)
                                   .order_by(Vm.name))).scalars().all()
    if users:
        raise Conflict(f"Cannot delete Template. Template {template.name} is being used by the "
                       f"following VMs: {', '.join(users)}.")
    for attachment, disk in await attachments_of(session, template_id=template.id):
        await session.delete(attachment)
        disk.template_id = None
        await session.flush()
        await jobs.submit(session, RemoveDisk(disk_id=disk.id),
                          description=f"Removing disk {disk.name} of template {template.name}",
                          owner_id=user.id)
    audit.record(session, f"Template {template.name} was removed by {user.user_name}",
                 code=audit.TEMPLATE_REMOVED, user_id=user.id)
    await session.delete(template)
