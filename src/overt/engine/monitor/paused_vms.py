"""VMs a storage I/O error paused, resumed once their host reaches their storage again
(oVirt's `auto_resume`, the default of `storage_error_resume_behaviour`).

A VM's disks stop it rather than fail the guest (their error policy is "stop"), so a
storage outage leaves its VMs paused with their writes waiting. The storage monitor's
probes say when a host reaches each domain again: a VM on that host whose every disk is
on a domain it reached in this round is resumed, and QEMU retries the waiting writes.
A VM with a disk the probes do not cover (a local or a direct LUN disk) is left paused,
as is one with `leave_paused` or one a job holds; `start` resumes such a VM by hand.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Set
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.bus.base import TransportError
from overt.engine import audit
from overt.engine.db.database import Database
from overt.engine.db.tables import Disk, DiskAttachment, Host, Lock, Vm
from overt.engine.model.node_states import IO_ERROR
from overt.engine.model.status import LogSeverity, StorageErrorResume, VmStatus
from overt.engine.nodes import NodeClient, NodeCommandFailed
from overt.protocol.commands import VmResume

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resumable:
    host: Host
    vm_id: uuid.UUID
    vm_name: str


async def resumable(session: AsyncSession, reached: Mapping[uuid.UUID, Set[uuid.UUID]],
                    hosts: Mapping[uuid.UUID, Host]) -> list[Resumable]:
    """The VMs to resume: paused by an I/O error on a host of `reached` (host id -> the
    domains it reached this round), `auto_resume`, free of jobs, every disk on a domain
    their host reached."""
    if not reached:
        return []
    vms = (await session.execute(select(Vm.id, Vm.name, Vm.host_id).where(
        Vm.status == VmStatus.PAUSED, Vm.paused_reason == IO_ERROR,
        Vm.storage_error_resume_behaviour == StorageErrorResume.AUTO_RESUME.value,
        Vm.host_id.in_(list(reached))))).all()
    if not vms:
        return []
    ids = [vm_id for vm_id, _, _ in vms]
    domains: dict[uuid.UUID | None, set[uuid.UUID | None]] = {}
    for vm_id, domain_id in (await session.execute(
            select(DiskAttachment.vm_id, Disk.storage_domain_id)
            .join(Disk, Disk.id == DiskAttachment.disk_id)
            .where(DiskAttachment.vm_id.in_(ids)))).all():
        domains.setdefault(vm_id, set()).add(domain_id)
    held = set((await session.scalars(select(Lock.resource_id).where(
        Lock.resource_type == "vm", Lock.resource_id.in_(ids)))).all())
    return [Resumable(hosts[host_id], vm_id, name) for vm_id, name, host_id in vms
            if host_id is not None and vm_id not in held and domains.get(vm_id)
            and domains[vm_id] <= set(reached[host_id])]


async def resume(db: Database, nodes: NodeClient, vms: list[Resumable], *,
                 timeout_s: float) -> None:
    """Ask each VM's host to resume it; its node's event then shows it up (the monitor's
    to write). A refusal is an event: the VM stays paused, and is tried again at the
    next probe that finds its storage reachable."""
    for vm in vms:
        log.info("resuming VM %s: its host reaches its storage again", vm.vm_name,
                 extra={"vm": vm.vm_name, "vm_id": vm.vm_id, "host": vm.host.name})
        try:
            await nodes.call(vm.host, VmResume(vm_id=vm.vm_id), timeout_s=timeout_s)
        except (TransportError, NodeCommandFailed) as exc:
            async with db.transaction() as session:
                audit.record(session, f"Failed to resume VM {vm.vm_name} paused by a storage "
                             f"I/O error on host {vm.host.name}: {exc}",
                             code=audit.VM_RESUME_FAILED, severity=LogSeverity.WARNING,
                             vm_id=vm.vm_id, host_id=vm.host.id)
