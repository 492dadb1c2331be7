"""What the engine knows of storage leases: the proof sources for HA restart and for
fencing's `skip_if_sd_active`.

Each node's lease keeper reports its last renewals (its host id lease per storage
domain, and the lease of each VM it runs); `monitor/lease_reports.py` records them.
A report's time is the engine's clock less the age the keeper gave, so hosts need no
common clock. These answers are only as fresh as the reports: a host that still
renews but cannot report looks expired here, which is why a start elsewhere re-checks
on storage (the keeper's acquire watches the lease for a whole lease timeout and
refuses a lease whose owner renews it) and never runs a second copy.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import StorageLeaseRenewal, Vm, VmLeaseRenewal, utcnow


async def host_renews_storage_lease(session: AsyncSession, host_id: uuid.UUID,
                                    now: dt.datetime | None = None) -> bool | None:
    """Whether the host renewed its id lease on some storage domain within that domain's
    lease timeout (True: it still reaches shared storage, so fencing it may be skipped);
    False when every reported renewal is older; None when it never reported one (the host
    holds no leases, or its keeper never ran): no evidence either way."""
    rows = (await session.scalars(select(StorageLeaseRenewal).where(
        StorageLeaseRenewal.host_id == host_id))).all()
    if not rows:
        return None
    now = now or utcnow()
    return any(now - row.renewed_at <= dt.timedelta(seconds=row.lease_timeout_s)
               for row in rows)


async def vm_lease_expired(session: AsyncSession, vm_id: uuid.UUID,
                           now: dt.datetime | None = None) -> bool:
    """Whether the VM's lease has expired: it has one, a host was reported holding it, and
    that host's last reported renewal is older than the lease timeout, after which a
    keeper has stopped the VM (it stops it at 3/4 of the timeout). False for a VM without
    a lease, or whose lease was never reported held: then there is no proof."""
    vm = await session.get(Vm, vm_id)
    if vm is None or vm.lease_storage_domain_id is None:
        return False
    row = await session.get(VmLeaseRenewal, vm_id)
    if row is None:
        return False
    now = now or utcnow()
    return now - row.renewed_at > dt.timedelta(seconds=row.lease_timeout_s)


async def vm_lease_expires_in(session: AsyncSession, vm_id: uuid.UUID,
                              now: dt.datetime | None = None) -> float | None:
    """Seconds until `vm_lease_expired` turns True (0 once it is), or None when it never
    will from what is known (no lease, or never reported held): how long an HA recovery
    waits for this proof rather than leaving the VM unknown."""
    vm = await session.get(Vm, vm_id)
    if vm is None or vm.lease_storage_domain_id is None:
        return None
    row = await session.get(VmLeaseRenewal, vm_id)
    if row is None:
        return None
    now = now or utcnow()
    left = row.lease_timeout_s - (now - row.renewed_at).total_seconds()
    return max(0.0, left)
