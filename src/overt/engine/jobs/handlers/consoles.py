"""Console tickets: a one-time password set on the VM's host, kept no longer than needed."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Host, Vm
from overt.engine.jobs import queue
from overt.engine.jobs.context import JobContext, Unit
from overt.engine.jobs.errors import JobFailed
from overt.engine.jobs.handlers.vms import running_host
from overt.engine.jobs.kinds import JobSpec, SetTicket
from overt.engine.queries import lookup
from overt.protocol.commands import VmSetTicket, VmTicket


async def set_ticket(ctx: JobContext, spec: SetTicket) -> dict[str, Any]:
    """The node's VNC port is recorded too (the console connects to it)."""
    if not spec.password:
        raise JobFailed("the ticket's password is gone (the job was already run); ask again")
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, spec.vm_id)
    host: Host = await running_host(ctx, vm)
    async with ctx.step(f"Setting the console ticket of VM {vm.name} on host {host.name}",
                        host_id=host.id):
        ticket = await ctx.nodes.call(
            host, VmSetTicket(vm_id=spec.vm_id, password=spec.password, expiry_s=spec.expiry_s),
            VmTicket, key=ctx.key("ticket"))
    async with ctx.transaction() as session:
        vm = await lookup.get(session, Vm, spec.vm_id)
        if vm.host_id == host.id and ticket.vnc_port > 0:
            vm.vnc_port = ticket.vnc_port
        await forget_password(session, ctx, spec)
    return {"vnc_port": ticket.vnc_port, "expires_at": ticket.expires_at}


async def forget_password(session: AsyncSession, ctx: JobContext, spec: SetTicket,
                          _message: str = "") -> None:
    """A secret is kept no longer than its job needs it, whether the job worked or not."""
    await queue.store_spec(session, ctx.job.id, spec.model_copy(update={"password": None}))


UNITS: dict[type[JobSpec], Unit[Any]] = {SetTicket: Unit(set_ticket, compensate=forget_password)}
