"""Shared (NFS, iSCSI) storage domains: add or import, attach to a data center, detach.

The engine is the allocation authority: it names every domain, image and volume and
records them here; a job then has one host of the data center carry the change out on
the export (overt.engine.jobs.handlers.storage_domains). A domain is `locked` while a
job works on it, and every job ends it in a settled state (`unattached`, `active`).
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import DataCenter, Host, Job, StorageDomain, User
from overt.engine.jobs.kinds import (
    AttachStorageDomain,
    CreateStorageDomain,
    DetachStorageDomain,
    IscsiOnHost,
)
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.model.names import check_name
from overt.engine.model.status import (
    HostStatus,
    StorageDomainStatus,
    StorageDomainType,
    StorageType,
)
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref
from overt.engine.queries.shared_storage import is_shared, lun_holders
from overt.engine.secrets import SecretBox
from overt.engine.services.inputs import LogicalUnitInput
from overt.engine.services.jobs import JobSubmitter
from overt.engine.services.storage_connections import NO_CHAP, check_chap, check_export
from overt.engine.services.storage_domains import StorageDomainInput, attached
from overt.protocol.storage import IQN, SERVER

_IQN_RE = re.compile(IQN)
_SERVER_RE = re.compile(SERVER)


async def add_nfs_domain(session: AsyncSession, jobs: JobSubmitter, data: StorageDomainInput,
                         user: User) -> StorageDomain:
    """A new NFS data domain, or (`import_`) the one already on that export; a job lays
    it out or reads it through `data.host`, then it is `unattached`."""
    name = check_name("storage_domain", data.name or "")
    address, path = check_export(data.address, data.path, "storage_domain.storage")
    kind = data.type or StorageDomainType.DATA
    if kind is not StorageDomainType.DATA:
        raise InvalidInput("only data domains can be added on NFS for now")
    host = await lookup.resolve(session, Host, data.host, "storage_domain.host")
    if await lookup.name_taken(session, StorageDomain, name):
        raise Conflict(f"Cannot add Storage. The name {name!r} is already in use.")
    used = (await session.execute(select(StorageDomain.name).where(
        StorageDomain.storage_type == StorageType.NFS.value, StorageDomain.address == address,
        StorageDomain.path == path))).scalars().first()
    if used is not None:
        raise Conflict(f"Cannot add Storage. The export {address}:{path} is already used by "
                       f"storage domain {used}.")
    sd_id = uuid.uuid4()
    domain = StorageDomain(id=sd_id, name=name, description=data.description or "",
                           type=kind.value, storage_type=StorageType.NFS.value, path=path,
                           address=address, host_id=host.id, data_center_id=None,
                           storage_uuid=None if data.import_ else sd_id,
                           status=StorageDomainStatus.LOCKED)
    session.add(domain)
    await session.flush()
    await _lay_out(session, jobs, sd_id, name, f"{address}:{path}", host, user,
                   import_=bool(data.import_))
    return domain


def _check_lun(data: StorageDomainInput) -> tuple[str, str]:
    if len(data.logical_units) != 1:
        raise InvalidInput("storage_domain.storage.logical_units must name one LUN "
                           "(address, port, target, and the LUN number as id)")
    return check_logical_unit(data.logical_units[0])


def check_logical_unit(unit: LogicalUnitInput) -> tuple[str, str]:
    """An iSCSI LUN's portal (host:port) and path (target/LUN number), as a domain or a
    direct LUN disk records them; 400 when the client's naming of it is wrong."""
    number = str(unit.lun_mapping) if unit.lun_mapping is not None else unit.id
    if not unit.address or not _SERVER_RE.match(unit.address):
        raise InvalidInput(f"logical_unit.address {unit.address!r} is not a host name or an "
                           "address")
    if not unit.target or not _IQN_RE.match(unit.target):
        raise InvalidInput(f"logical_unit.target {unit.target!r} is not an iSCSI name (iqn.)")
    if number is None or not number.isdigit() or int(number) > 16383:
        raise InvalidInput(f"logical_unit.id {number!r} must be the LUN number")
    port = unit.port or 3260
    if port > 65535:
        raise InvalidInput(f"logical_unit.port {port} is not a port")
    return f"{unit.address}:{port}", f"{unit.target}/{int(number)}"


async def _check_lun_free(session: AsyncSession, portal: str, path: str) -> None:
    used, lun_disk = await lun_holders(session, portal, path)
    if used is not None:
        raise Conflict(f"Cannot add Storage. The LUN {path} of {portal} is already used by "
                       f"storage domain {used}.")
    if lun_disk is not None:
        raise Conflict(f"Cannot add Storage. The LUN {path} of {portal} is direct LUN disk "
                       f"{lun_disk}.")


async def _check_iscsi_request(session: AsyncSession, data: StorageDomainInput) -> Host:
    if (data.type or StorageDomainType.DATA) is not StorageDomainType.DATA:
        raise InvalidInput("only data domains can be added on iSCSI for now")
    host = await lookup.resolve(session, Host, data.host, "storage_domain.host")
    if await lookup.name_taken(session, StorageDomain, check_name("storage_domain",
                                                                  data.name or "")):
        raise Conflict(f"Cannot add Storage. The name {data.name!r} is already in use.")
    return host


async def import_reading(session: AsyncSession, jobs: JobSubmitter, box: SecretBox,
                         data: StorageDomainInput, user: User) -> Job:
    """The first half of an iSCSI domain's import (`import_`): the request is checked,
    then the domain's host reads the LUN's metadata area in a job the API waits for
    (`IscsiOnHost` `read`), whose result `add_iscsi_domain` takes; nothing is recorded
    before the area says which domain it is. A LUN named by its SCSI id is found by the
    same job."""
    check_name("storage_domain", data.name or "")
    if len(data.logical_units) != 1:
        raise InvalidInput("storage_domain.storage.logical_units must name one LUN "
                           "(address, port, target, and the LUN number or SCSI id as id)")
    unit = data.logical_units[0]
    scsi_id = unit.id if unit.lun_mapping is None and unit.id and not unit.id.isdigit() \
        else None
    if scsi_id is not None:
        unit = dataclasses.replace(unit, id="0")  # the portal and target are checked
    portal, path = check_logical_unit(unit)
    chap = check_chap(unit.username, unit.password, NO_CHAP, box, "logical_unit")
    host = await _check_iscsi_request(session, data)
    if host.status != HostStatus.UP:
        raise Conflict(f"Cannot import Storage: host {host.name} is {host.status}, not up.")
    if scsi_id is None:
        await _check_lun_free(session, portal, path)
    target, _, number = path.rpartition("/")
    return await jobs.submit(session, IscsiOnHost(
        host_id=host.id, op="read", address=unit.address, port=int(portal.rpartition(":")[2]),
        target=target, lun=None if scsi_id is not None else int(number), scsi_id=scsi_id,
        chap_username=chap.username, chap_password_sealed=chap.password_sealed),
        description=f"Reading the storage domain on LUN {unit.id} of {target} on host "
        f"{host.name}", owner_id=user.id)


async def _importable(session: AsyncSession, found: dict[str, Any], portal: str,
                      path: str) -> uuid.UUID:
    """The id of the domain the read LUN holds; 400 when it holds none Overt can import,
    409 when it is attached to a data center or this engine knows it already."""
    area = found.get("area") or {}
    where = f"LUN {path} of {portal}"
    if area.get("SDUUID") and area.get("POOL_UUID"):
        raise Conflict(f"Cannot import Storage. The storage domain on {where} is still "
                       f"attached to data center {area['POOL_UUID']} of its engine: put it "
                       "in maintenance and detach it there first.")
    if found.get("problem"):
        raise InvalidInput(f"Cannot import Storage. {where}: {found['problem']}.")
    sd_id = uuid.UUID(area["SDUUID"])
    known = (await session.execute(select(StorageDomain.name).where(or_(
        StorageDomain.id == sd_id, StorageDomain.storage_uuid == sd_id)))).scalars().first()
    if known is not None:
        raise Conflict(f"Cannot import Storage. The storage domain on {where} ({sd_id}) is "
                       f"storage domain {known} of this engine already.")
    return sd_id


async def add_iscsi_domain(session: AsyncSession, jobs: JobSubmitter, box: SecretBox,
                           data: StorageDomainInput, user: User, *,
                           found: dict[str, Any] | None = None) -> StorageDomain:
    """A new iSCSI data domain on one LUN (with CHAP if the LUN's target asks for it); a
    job writes its metadata area, then it is `unattached`. With `import_`, the domain
    already on the LUN, as the host read it (`found`, the result of `import_reading`):
    it keeps its id, and the job adopts its disks."""
    name = check_name("storage_domain", data.name or "")
    portal, path = _check_lun(data)
    unit = data.logical_units[0]
    chap = check_chap(unit.username, unit.password, NO_CHAP, box, "logical_unit")
    host = await _check_iscsi_request(session, data)
    await _check_lun_free(session, portal, path)
    sd_id = uuid.uuid4()
    if data.import_:
        if found is None:
            raise InvalidInput("an iSCSI domain's import reads its LUN first")
        sd_id = await _importable(session, found, portal, path)
    domain = StorageDomain(id=sd_id, name=name, description=data.description or "",
                           type=StorageDomainType.DATA.value,
                           storage_type=StorageType.ISCSI.value, path=path, address=portal,
                           host_id=host.id, data_center_id=None, storage_uuid=sd_id,
                           status=StorageDomainStatus.LOCKED, chap_username=chap.username,
                           chap_password_sealed=chap.password_sealed)
    session.add(domain)
    await session.flush()
    await _lay_out(session, jobs, sd_id, name, f"LUN {path} of {portal}", host, user,
                   import_=bool(data.import_))
    return domain


async def attach_domain(session: AsyncSession, jobs: JobSubmitter, dc_id: uuid.UUID,
                        ref: Ref | None, user: User) -> StorageDomain:
    """Attach an unattached shared domain to a data center; a job records the data center
    in the domain's metadata and activates it."""
    dc = await lookup.get(session, DataCenter, dc_id)
    found = await lookup.resolve(session, StorageDomain, ref, "storage_domain")
    domain = await lookup.get(session, StorageDomain, found.id, for_update=True)
    if not is_shared(domain):
        raise Conflict(f"Cannot attach Storage Domain {domain.name}: a {domain.storage_type} "
                       "domain belongs to its host's data center.")
    if domain.data_center_id == dc.id:
        return domain
    if domain.status != StorageDomainStatus.UNATTACHED or domain.data_center_id:
        raise Conflict(f"Cannot attach Storage Domain {domain.name}: it is {domain.status}"
                       + (", attached to another data center" if domain.data_center_id else "")
                       + "; only an unattached domain can be attached.")
    domain.data_center_id = dc.id
    domain.status = StorageDomainStatus.LOCKED
    await jobs.submit(session, AttachStorageDomain(storage_domain_id=domain.id,
                                                   data_center_id=dc.id),
                      description=f"Attaching storage domain {domain.name} to data center "
                      f"{dc.name}", owner_id=user.id)
    audit.record(session, f"Storage Domain {domain.name} is being attached to Data Center "
                 f"{dc.name} by {user.user_name}", storage_domain_id=domain.id,
                 data_center_id=dc.id, user_id=user.id)
    return domain


async def detach_domain(session: AsyncSession, jobs: JobSubmitter, dc_id: uuid.UUID,
                        sd_id: uuid.UUID, user: User) -> StorageDomain:
    """Detach a shared domain in maintenance; its metadata forgets the data center, so
    another engine may import it."""
    domain = await attached(session, dc_id, sd_id)
    if not is_shared(domain):
        raise Conflict(f"Cannot detach Storage Domain {domain.name}: a {domain.storage_type} "
                       "domain cannot be detached.")
    if domain.status != StorageDomainStatus.MAINTENANCE:
        raise Conflict(f"Cannot detach Storage Domain {domain.name}: it is {domain.status}; "
                       "switch it to maintenance first.")
    domain.status = StorageDomainStatus.LOCKED
    await jobs.submit(session, DetachStorageDomain(storage_domain_id=domain.id),
                      description=f"Detaching storage domain {domain.name}", owner_id=user.id)
    audit.record(session, f"Storage Domain {domain.name} is being detached by "
                 f"{user.user_name}", storage_domain_id=domain.id, data_center_id=dc_id,
                 user_id=user.id)
    return domain


async def _lay_out(session: AsyncSession, jobs: JobSubmitter, sd_id: uuid.UUID, name: str,
                   where: str, host: Host, user: User, *, import_: bool) -> None:
    """The job that lays out a new domain (or adopts the one on storage), and the event
    that says so."""
    verb = "imported" if import_ else "added"
    await jobs.submit(session, CreateStorageDomain(storage_domain_id=sd_id, host_id=host.id,
                                                   import_domain=import_),
                      description=f"{'Importing' if import_ else 'Adding'} storage "
                      f"domain {name}", owner_id=user.id)
    audit.record(session, f"Storage Domain {name} ({where}) is being {verb} by "
                 f"{user.user_name}", code=audit.STORAGE_DOMAIN_ADDED, storage_domain_id=sd_id,
                 host_id=host.id, user_id=user.id)
