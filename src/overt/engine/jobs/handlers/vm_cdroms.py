"""One job kind, `vm.cdrom`: change the media in a running VM's cdrom drive on its host.

The service layer has already recorded the wanted media as the VM's current cdrom; this
job makes the live domain match, and on failure puts the record back as it was.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Disk, Host, Vm
from overt.engine.jobs.context import JobContext, Unit
from overt.engine.jobs.errors import JobFailed, RetryLater
from overt.engine.jobs.kinds import ChangeVmCdrom, JobSpec
from overt.engine.model.status import HostStatus
from overt.engine.queries import lookup
from overt.engine.queries.vm_spec import cdrom_spec
from overt.protocol.host import VmStatusReport
from overt.protocol.vm_cdroms import VmCdromChange


async def change_cdrom(ctx: JobContext, job: ChangeVmCdrom) -> dict[str, Any]:
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, job.vm_id)
        if vm.host_id is None:
            raise JobFailed(f"VM {vm.name} is not running on any host")
        host = await lookup.get(session, Host, vm.host_id)
        disk = await session.get(Disk, job.disk_id) if job.disk_id is not None else None
        if job.disk_id is not None and disk is None:
            raise JobFailed(f"ISO disk {job.disk_id} is gone")
        cdrom = await cdrom_spec(session, job.disk_id, box=ctx.services.secret_box())
    if host.status in (HostStatus.NON_RESPONSIVE, HostStatus.CONNECTING):
        raise RetryLater(f"host {host.name} is {host.status}")
    what = f"Inserting ISO {disk.name} into" if disk is not None else "Ejecting the cdrom of"
    async with ctx.step(f"{what} VM {vm.name} on host {host.name}", host_id=host.id):
        await ctx.nodes.call(host, VmCdromChange(vm_id=vm.id, cdrom=cdrom), VmStatusReport,
                             key=ctx.key("cdrom"))
    async with ctx.transaction() as session:
        if disk is not None:
            audit.record(session, f"CD {disk.name} was inserted into VM {vm.name}",
                         code=audit.CDROM_CHANGED, vm_id=vm.id, job_id=ctx.job.id)
        else:
            audit.record(session, f"CD was ejected from VM {vm.name}",
                         code=audit.CDROM_EJECTED, vm_id=vm.id, job_id=ctx.job.id)
    return {"disk_id": str(job.disk_id) if job.disk_id else None}


async def _change_failed(session: AsyncSession, ctx: JobContext, job: ChangeVmCdrom,
                         message: str) -> None:
    """The drive still holds what it held: record that again."""
    vm = await session.get(Vm, job.vm_id)
    if vm is not None and vm.cdrom_current_disk_id == job.disk_id:
        vm.cdrom_current_disk_id = job.previous_disk_id


UNITS: dict[type[JobSpec], Unit[Any]] = {
    ChangeVmCdrom: Unit(change_cdrom, compensate=_change_failed)}
