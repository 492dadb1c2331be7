"""Storage domains: add a local one, rename, switch to maintenance and back, remove when empty."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Cluster, DataCenter, Disk, Host, StorageDomain, User, Vm
from overt.engine.model.errors import Conflict, InvalidInput, NotFound
from overt.engine.model.names import check_name
from overt.engine.model.status import StorageDomainStatus, StorageDomainType, StorageType
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref
from overt.engine.services.inputs import LogicalUnitInput

_REMOVABLE = {StorageDomainStatus.MAINTENANCE, StorageDomainStatus.UNATTACHED,
              StorageDomainStatus.INACTIVE}


@dataclass
class StorageDomainInput:
    """What a client may set on a storage domain; None leaves a field as it is."""

    name: str | None = None
    description: str | None = None
    type: StorageDomainType | None = None
    storage_type: StorageType | None = None
    path: str | None = None
    host: Ref | None = None
    address: str | None = None  # an NFS server
    import_: bool = False  # adopt the domain already on that storage
    logical_units: list[LogicalUnitInput] = field(default_factory=list)  # iSCSI


async def add_storage_domain(session: AsyncSession, data: StorageDomainInput,
                             user: User) -> StorageDomain:
    """A local storage domain: a directory on one host (NFS and iSCSI come later)."""
    name = check_name("storage_domain", data.name or "")
    if data.storage_type is None or data.path is None:
        raise InvalidInput("storage_domain.storage is required (type and path)")
    if data.storage_type is not StorageType.LOCALFS:
        raise InvalidInput("only localfs storage domains can be added for now")
    if not data.path.startswith("/"):
        raise InvalidInput(f"storage_domain.storage.path must be absolute, not {data.path!r}")
    host = await lookup.resolve(session, Host, data.host, "storage_domain.host")
    if await lookup.name_taken(session, StorageDomain, name):
        raise Conflict(f"Cannot add Storage. The name {name!r} is already in use.")
    cluster = await lookup.get(session, Cluster, host.cluster_id)
    domain = StorageDomain(id=uuid.uuid4(), name=name, description=data.description or "",
                           type=(data.type or StorageDomainType.DATA).value,
                           storage_type=data.storage_type.value, path=data.path,
                           host_id=host.id, data_center_id=cluster.data_center_id,
                           status=StorageDomainStatus.ACTIVE)
    session.add(domain)
    await session.flush()
    audit.record(session, f"Storage Domain {name} was added by {user.user_name}",
                 code=audit.STORAGE_DOMAIN_ADDED, storage_domain_id=domain.id,
                 data_center_id=domain.data_center_id, host_id=host.id, user_id=user.id)
    return domain


async def update_storage_domain(session: AsyncSession, sd_id: uuid.UUID,
                                data: StorageDomainInput, user: User) -> StorageDomain:
    """Name and description change; where the storage is does not (a new domain is needed)."""
    domain = await lookup.get(session, StorageDomain, sd_id, for_update=True)
    if (data.path is not None and data.path != domain.path) or \
            (data.storage_type is not None and data.storage_type.value != domain.storage_type):
        raise Conflict(f"Cannot edit Storage Domain {domain.name}: its storage (type and path) "
                       "cannot change; add a new storage domain instead.")
    if data.type is not None and data.type.value != domain.type:
        raise Conflict(f"Cannot edit Storage Domain {domain.name}: its type cannot change.")
    if data.name is not None:
        name = check_name("storage_domain", data.name)
        if await lookup.name_taken(session, StorageDomain, name, other_than=domain.id):
            raise Conflict(f"Cannot edit Storage Domain. The name {name!r} is already in use.")
        domain.name = name
    if data.description is not None:
        domain.description = data.description
    audit.record(session, f"Storage Domain {domain.name} was updated by {user.user_name}",
                 code=audit.STORAGE_DOMAIN_UPDATED, storage_domain_id=domain.id, user_id=user.id)
    return domain


async def attached(session: AsyncSession, dc_id: uuid.UUID, sd_id: uuid.UUID) -> StorageDomain:
    """The storage domain `sd_id` as attached to data center `dc_id` (404 if it is not)."""
    dc = await lookup.get(session, DataCenter, dc_id)
    domain = await lookup.get(session, StorageDomain, sd_id, for_update=True)
    if domain.data_center_id != dc.id:
        raise NotFound(f"storage domain {domain.name} is not attached to data center "
                              f"{dc.name}")
    return domain


async def deactivate_storage_domain(session: AsyncSession, dc_id: uuid.UUID, sd_id: uuid.UUID,
                                    user: User) -> StorageDomain:
    """Maintenance: no new disks go there, and the domain may then be removed (also from
    `inactive`, a domain no host reaches)."""
    domain = await attached(session, dc_id, sd_id)
    if domain.status == StorageDomainStatus.MAINTENANCE:
        return domain
    if domain.status not in (StorageDomainStatus.ACTIVE, StorageDomainStatus.INACTIVE):
        raise Conflict(f"Cannot deactivate Storage Domain {domain.name}: it is {domain.status}.")
    domain.status = StorageDomainStatus.MAINTENANCE
    audit.record(session, f"Storage Domain {domain.name} was switched to maintenance by "
                 f"{user.user_name}", code=audit.STORAGE_DOMAIN_DEACTIVATED,
                 storage_domain_id=domain.id, data_center_id=dc_id, user_id=user.id)
    return domain


async def activate_storage_domain(session: AsyncSession, dc_id: uuid.UUID, sd_id: uuid.UUID,
                                  user: User) -> StorageDomain:
    domain = await attached(session, dc_id, sd_id)
    if domain.status == StorageDomainStatus.ACTIVE:
        return domain
    if domain.status not in (StorageDomainStatus.MAINTENANCE, StorageDomainStatus.INACTIVE):
        raise Conflict(f"Cannot activate Storage Domain {domain.name}: it is {domain.status}, "
                       "not in maintenance.")
    domain.status = StorageDomainStatus.ACTIVE
    audit.record(session, f"Storage Domain {domain.name} was activated by {user.user_name}",
                 code=audit.STORAGE_DOMAIN_ACTIVATED, storage_domain_id=domain.id,
                 data_center_id=dc_id, user_id=user.id)
    return domain


async def remove_storage_domain(session: AsyncSession, sd_id: uuid.UUID, user: User) -> None:
    """Only an empty domain in maintenance goes; its directory on the host is left as it is."""
    domain = await lookup.get(session, StorageDomain, sd_id, for_update=True)
    disks = await lookup.count(session, Disk, Disk.storage_domain_id == domain.id)
    if disks:
        raise Conflict(f"Cannot remove Storage Domain {domain.name}: it still holds {disks} "
                       "disk(s); remove or move them first.")
    leases = await lookup.count(session, Vm, Vm.lease_storage_domain_id == domain.id)
    if leases:
        raise Conflict(f"Cannot remove Storage Domain {domain.name}: it holds the leases of "
                       f"{leases} VM(s); remove their leases first.")
    if domain.status not in _REMOVABLE:
        raise Conflict(f"Cannot remove Storage Domain {domain.name}: it is {domain.status}; "
                       "switch it to maintenance first.")
    audit.record(session, f"Storage Domain {domain.name} was removed by {user.user_name}",
                 code=audit.STORAGE_DOMAIN_REMOVED, data_center_id=domain.data_center_id,
                 user_id=user.id)
    await session.delete(domain)
