"""Templates: importing a disk image as a template that VMs are thin copies of."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Disk, DiskAttachment, StorageDomain, Template, User
from overt.engine.jobs.kinds import CreateDisk
from overt.engine.model.errors import Conflict
from overt.engine.model.status import DiskFormat, DiskStatus, TemplateStatus
from overt.engine.queries import lookup
from overt.engine.services.jobs import JobSubmitter


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
