"""Recording what a node's lease keeper reports (in the node's stats): the host's last
renewal of its id lease per storage domain and of each VM lease it holds."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import StorageDomain, StorageLeaseRenewal, Vm, VmLeaseRenewal, utcnow
from overt.protocol.host import LeaseReport


async def record_lease_report(session: AsyncSession, host_id: uuid.UUID, report: LeaseReport,
                              now: dt.datetime | None = None) -> None:
    """Store the report; renewals on unknown domains or of unknown VMs are ignored
    (removed while the report travelled). A report's ages count back from `now`."""
    now = now or utcnow()
    domains: dict[uuid.UUID, tuple[uuid.UUID, float]] = {}  # on-storage id -> row id, timeout
    for lease in report.domains:
        domain = (await session.scalars(select(StorageDomain).where(or_(
            StorageDomain.storage_uuid == lease.domain_id,
            StorageDomain.id == lease.domain_id)))).first()
        if domain is None:
            continue
        domains[lease.domain_id] = (domain.id, lease.lease_timeout_s)
        renewed = now - dt.timedelta(seconds=lease.renewed_age_s)
        row = await session.get(StorageLeaseRenewal, (host_id, domain.id))
        if row is None:
            session.add(StorageLeaseRenewal(host_id=host_id, storage_domain_id=domain.id,
                                            renewed_at=renewed,
                                            lease_timeout_s=lease.lease_timeout_s))
        else:
            row.renewed_at, row.lease_timeout_s = renewed, lease.lease_timeout_s
    for held in report.vms:
        if held.domain_id not in domains or await session.get(Vm, held.vm_id) is None:
            continue
        domain_id, timeout = domains[held.domain_id]
        renewed = now - dt.timedelta(seconds=held.renewed_age_s)
        row_vm = await session.get(VmLeaseRenewal, held.vm_id)
        if row_vm is None:
            session.add(VmLeaseRenewal(vm_id=held.vm_id, host_id=host_id,
                                       storage_domain_id=domain_id, renewed_at=renewed,
                                       lease_timeout_s=timeout))
        elif renewed >= row_vm.renewed_at or row_vm.host_id != host_id:
            row_vm.host_id, row_vm.storage_domain_id = host_id, domain_id
            row_vm.renewed_at, row_vm.lease_timeout_s = renewed, timeout
    await session.flush()
