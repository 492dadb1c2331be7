"""A VM's lease (oVirt's `vm.lease`): set on a shared storage domain, or removed."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import StorageDomain, Vm, VmLeaseRenewal
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.model.status import StorageType, VmStatus
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref

LEASE_STORAGE = frozenset({StorageType.NFS.value, StorageType.ISCSI.value})
LEASE_SLOTS = 2000  # slots of a domain's xleases area (1 MiB of 512-byte slots, less spare)


async def set_vm_lease(session: AsyncSession, vm: Vm, domain_ref: Ref | None, *,
                       unset: bool) -> bool:
    """Give the VM a lease slot on the domain, move it, or remove it; whether it changed.
    A slot needs no writing: a zeroed slot is a free lease, and the first acquire on a
    node lays out the domain's lease areas."""
    if domain_ref is None and not unset:
        return False
    if unset:
        if vm.lease_storage_domain_id is None:
            return False
        _require_down(vm)
        vm.lease_storage_domain_id, vm.lease_slot = None, None
        renewal = await session.get(VmLeaseRenewal, vm.id)
        if renewal is not None:
            await session.delete(renewal)
        return True
    domain = await lookup.resolve(session, StorageDomain, domain_ref, "vm.lease.storage_domain")
    if domain.id == vm.lease_storage_domain_id:
        return False
    if domain.storage_type not in LEASE_STORAGE:
        raise InvalidInput(f"Cannot put the lease of VM {vm.name} on storage domain "
                           f"{domain.name}: leases need a shared NFS or iSCSI domain, and "
                           f"it is {domain.storage_type}.")
    _require_down(vm)
    used = set((await session.scalars(select(Vm.lease_slot).where(
        Vm.lease_storage_domain_id == domain.id, Vm.id != vm.id))).all())
    slot = next((n for n in range(LEASE_SLOTS) if n not in used), None)
    if slot is None:
        raise Conflict(f"Storage domain {domain.name} has no free lease slot.")
    vm.lease_storage_domain_id, vm.lease_slot = domain.id, slot
    return True


def _require_down(vm: Vm) -> None:
    if vm.status != VmStatus.DOWN:
        raise Conflict(f"Cannot change the lease of VM {vm.name} while it is {vm.status}: "
                       "stop it first.")
