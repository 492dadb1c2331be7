"""Recording what a node's lease keeper reports (its `status`): the host's last renewal
per storage domain and the last renewal of each VM lease it holds."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import StorageDomain, StorageLeaseRenewal, Vm, VmLeaseRenewal, utcnow


async def record_lease_report(session: AsyncSession, host_id: uuid.UUID,
                              report: dict[str, Any], now: dt.datetime | None = None) -> None:
    """Store the keeper's report (`domains` and `vms`, each with `renewed_age_s`); rows of
    unknown domains or VMs are ignored (removed while the report travelled)."""
    now = now or utcnow()
    timeouts: dict[str, float] = {}
    for domain_id, facts in (report.get("domains") or {}).items():
        domain = uuid.UUID(domain_id)
        timeouts[domain_id] = float(facts["lease_timeout_s"])
        if await session.get(StorageDomain, domain) is None:
            continue
        renewed = now - dt.timedelta(seconds=float(facts["renewed_age_s"]))
        row = await session.get(StorageLeaseRenewal, (host_id, domain))
        if row is None:
            session.add(StorageLeaseRenewal(host_id=host_id, storage_domain_id=domain,
                                            renewed_at=renewed,
                                            lease_timeout_s=timeouts[domain_id]))
        else:
            row.renewed_at, row.lease_timeout_s = renewed, timeouts[domain_id]
    for vm_id, facts in (report.get("vms") or {}).items():
        vm, domain_id = uuid.UUID(vm_id), str(facts["domain_id"])
        if await session.get(Vm, vm) is None or domain_id not in timeouts:
            continue
        renewed = now - dt.timedelta(seconds=float(facts["renewed_age_s"]))
        lease = await session.get(VmLeaseRenewal, vm)
        if lease is None:
            session.add(VmLeaseRenewal(vm_id=vm, host_id=host_id,
                                       storage_domain_id=uuid.UUID(domain_id),
                                       renewed_at=renewed, lease_timeout_s=timeouts[domain_id]))
        elif renewed >= lease.renewed_at or lease.host_id != host_id:
            lease.host_id, lease.storage_domain_id = host_id, uuid.UUID(domain_id)
            lease.renewed_at, lease.lease_timeout_s = renewed, timeouts[domain_id]
    await session.flush()
