"""One job kind, `vm.nic`: plug, unplug or relink one NIC of a running VM on its host.

The service layer has already recorded the NIC's wanted state (`plugged`, `linked`); this
job makes the live domain match, and on failure puts the record back as it was.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Host, Network, Vm, VmNic, VnicProfile
from overt.engine.jobs.context import JobContext, Unit
from overt.engine.jobs.errors import JobFailed, RetryLater
from overt.engine.jobs.kinds import ChangeVmNic, JobSpec
from overt.engine.model.status import HostStatus
from overt.engine.queries import lookup
from overt.engine.queries.vm_spec import nic_spec
from overt.protocol.host import VmStatusReport
from overt.protocol.vm import NicSpec
from overt.protocol.vm_nics import VmNicLink, VmNicPlug, VmNicUnplug

PLUG, UNPLUG, LINK = "plug", "unplug", "link"
_WORDS = {PLUG: "Plugging", UNPLUG: "Unplugging", LINK: "Setting the link of"}


async def _load(ctx: JobContext, job: ChangeVmNic) -> tuple[Vm, VmNic, NicSpec, Host]:
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, job.vm_id)
        nic = await session.get(VmNic, job.nic_id)
        if nic is None or nic.vm_id != vm.id:
            raise JobFailed(f"VM {vm.name} has no NIC {job.nic_id} any more")
        profile = await session.get(VnicProfile, nic.vnic_profile_id) \
            if nic.vnic_profile_id else None
        network = await session.get(Network, profile.network_id) if profile else None
        if network is None:
            raise JobFailed(f"NIC {nic.name} of VM {vm.name} is on no network")
        if vm.host_id is None:
            raise JobFailed(f"VM {vm.name} is not running on any host")
        host = await lookup.get(session, Host, vm.host_id)
    if host.status in (HostStatus.NON_RESPONSIVE, HostStatus.CONNECTING):
        raise RetryLater(f"host {host.name} is {host.status}")
    spec = nic_spec(nic, network)
    if job.linked is not None:
        spec = spec.model_copy(update={"linked": job.linked})
    return vm, nic, spec, host


async def change_nic(ctx: JobContext, job: ChangeVmNic) -> dict[str, Any]:
    op = job.op
    vm, nic, spec, host = await _load(ctx, job)
    command: VmNicPlug | VmNicUnplug | VmNicLink
    if op == PLUG:
        command = VmNicPlug(vm_id=vm.id, nic=spec)
    elif op == UNPLUG:
        command = VmNicUnplug(vm_id=vm.id, nic=spec)
    elif op == LINK:
        command = VmNicLink(vm_id=vm.id, nic=spec)
    else:
        raise JobFailed(f"unknown NIC change {op!r}")
    async with ctx.step(f"{_WORDS[op]} NIC {nic.name} of VM {vm.name} on host {host.name}",
                        host_id=host.id):
        await ctx.nodes.call(host, command, VmStatusReport, key=ctx.key(op))
    async with ctx.transaction() as session:
        if op == LINK:
            state = "up" if spec.linked else "down"
            audit.record(session, f"Link of NIC {nic.name} of VM {vm.name} is {state}",
                         code=audit.VM_NIC_LINK_CHANGED, vm_id=vm.id, job_id=ctx.job.id)
        else:
            audit.record(session, f"NIC {nic.name} was {op}ged {'into' if op == PLUG else 'from'}"
                         f" VM {vm.name}", vm_id=vm.id, job_id=ctx.job.id,
                         code=audit.VM_NIC_PLUGGED if op == PLUG else audit.VM_NIC_UNPLUGGED)
    return {"nic_id": str(nic.id), "op": op}


async def _change_failed(session: AsyncSession, ctx: JobContext, job: ChangeVmNic,
                         message: str) -> None:
    """Put the NIC's record back as the domain still has it."""
    nic = await session.get(VmNic, job.nic_id)
    if nic is None:
        return
    if job.op == PLUG:
        nic.plugged = False
    elif job.op == UNPLUG:
        nic.plugged = True
    elif job.op == LINK and job.linked is not None:
        nic.linked = not job.linked


UNITS: dict[type[JobSpec], Unit[Any]] = {ChangeVmNic: Unit(change_nic, compensate=_change_failed)}
