"""Storage connections as oVirt has them: added on their own, edited, removed when unused,
and added to (or taken from) an iSCSI domain as further portals of its target.

The connection a shared domain was made on is the domain's own `address` and `path`, so
its id is derived from the domain's; editing it moves the domain to another server or
portal, which oVirt allows only while the domain is not in use (maintenance or
unattached; `force` also while it is active). The nodes read a domain's connection from
the domain at every command, so the next probe, disk job or VM start uses the new one.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import (
    Host,
    StorageConnection,
    StorageDomain,
    StorageDomainConnection,
    User,
)
from overt.engine.model.errors import Conflict, InvalidInput, NotFound
from overt.engine.model.status import StorageDomainStatus, StorageType
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref
from overt.engine.secrets import Secret, SecretBox
from overt.protocol.storage import EXPORT, IQN, SERVER

ISCSI_PORT = 3260
NFS_VERSIONS = ("auto", "v3", "v4", "v4_0", "v4_1", "v4_2")
_NAMESPACE = uuid.UUID("5d0c7a52-8f0e-4a8e-9b7e-3c6f1e2a9d41")  # of domains' connection ids
_SHARED = (StorageType.NFS.value, StorageType.ISCSI.value)
_IDLE = (StorageDomainStatus.MAINTENANCE, StorageDomainStatus.UNATTACHED)
_SERVER_RE = re.compile(SERVER)
_EXPORT_RE = re.compile(EXPORT)
_IQN_RE = re.compile(IQN)
# A CHAP name or secret: printable, no separators QEMU's option syntax or a URL would split.
_CHAP_RE = re.compile(r"^[\x21-\x7e]{1,255}$")


@dataclass
class ConnectionInput:
    """What a client sends for a connection; None leaves a field as it is."""

    type: StorageType | None = None
    address: str | None = None
    path: str | None = None
    port: int | None = None
    target: str | None = None
    nfs_version: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # CHAP; never echoed
    host: Ref | None = None


@dataclass(frozen=True)
class Endpoint:
    """A connection's fields as one value: what is compared for duplicates."""

    type: str
    address: str
    path: str | None = None  # NFS
    port: int | None = None  # iSCSI
    target: str | None = None


def domain_connection_id(domain: StorageDomain) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, str(domain.id))


def domain_endpoint(domain: StorageDomain) -> Endpoint:
    if domain.storage_type == StorageType.NFS:
        return Endpoint(StorageType.NFS.value, domain.address or "", path=domain.path)
    host, _, port = (domain.address or "").partition(":")
    target, _, _lun = domain.path.rpartition("/")
    return Endpoint(StorageType.ISCSI.value, host,
                    port=int(port) if port.isdigit() else ISCSI_PORT, target=target)


def row_endpoint(row: StorageConnection) -> Endpoint:
    return Endpoint(row.type, row.address, path=row.path, port=row.port, target=row.target)


def check_export(address: str | None, path: str | None, what: str) -> tuple[str, str]:
    """An NFS server and export path, the path normalised ("/export", no dot segments)."""
    if not address:
        raise InvalidInput(f"{what}.address is required for NFS")
    if not _SERVER_RE.match(address):
        raise InvalidInput(f"{what}.address {address!r} is not a host name or an address")
    if not path:
        raise InvalidInput(f"{what}.path is required (the NFS export)")
    normal = "/" + path.strip("/")
    if not _EXPORT_RE.match(normal) or "/../" in f"{normal}/" or "/./" in f"{normal}/":
        raise InvalidInput(f"{what}.path {path!r} is not an absolute export path")
    return address, normal


def _check_portal(address: str | None, port: int | None, target: str | None) -> Endpoint:
    if not address or ":" in address or not _SERVER_RE.match(address):
        raise InvalidInput(f"storage_connection.address {address!r} is not a host name or an "
                           "address")
    if port is None or not 1 <= port <= 65535:
        raise InvalidInput(f"storage_connection.port {port} is not a port")
    if not target or not _IQN_RE.match(target):
        raise InvalidInput(f"storage_connection.target {target!r} is not an iSCSI name (iqn.)")
    return Endpoint(StorageType.ISCSI.value, address, port=port, target=target)


@dataclass(frozen=True)
class Chap:
    """CHAP credentials as a connection keeps them: the user and the sealed password."""

    username: str | None
    password_sealed: str | None


NO_CHAP = Chap(None, None)


def check_chap(username: str | None, password: str | None, old: Chap, box: SecretBox,
               what: str = "storage_connection") -> Chap:
    """The CHAP credentials after a request: both given, both kept, or cleared with an
    empty user name; a password without a user, or a new user without a password, is
    refused. Messages never hold the password."""
    if username == "" and not password:
        return NO_CHAP
    if username is None and password is None:
        return old
    name = username if username is not None else old.username
    if not name:
        raise InvalidInput(f"{what}.password needs {what}.username (CHAP)")
    if not _CHAP_RE.match(name) or "," in name:
        raise InvalidInput(f"{what}.username is not a CHAP user name (1-255 printable "
                           "characters, no spaces or commas)")
    if password is None:
        if old.password_sealed and name == old.username:
            return old
        raise InvalidInput(f"{what}.password is required with {what}.username (CHAP)")
    if not _CHAP_RE.match(password):
        raise InvalidInput(f"{what}.password is not a CHAP secret (1-255 printable "
                           "characters, no spaces)")
    return Chap(name, box.seal(Secret(password)))


def domain_chap(domain: StorageDomain) -> Chap:
    return Chap(domain.chap_username, domain.chap_password_sealed)


def _endpoint(kind: str, data: ConnectionInput, old: Endpoint | None) -> Endpoint:
    """The connection `data` describes, over `old` for the fields it leaves out."""
    if data.type is not None and old is not None and data.type.value != old.type:
        raise Conflict(f"Cannot edit Storage Connection: its type ({old.type}) cannot change.")
    if (data.username or data.password) and kind != StorageType.ISCSI:
        raise InvalidInput("storage_connection.username and password (CHAP) are for iSCSI "
                           "connections")
    if kind == StorageType.NFS:
        address, path = check_export(data.address or (old.address if old else None),
                                     data.path or (old.path if old else None),
                                     "storage_connection")
        return Endpoint(kind, address, path=path)
    if kind == StorageType.ISCSI:
        if data.path:
            raise InvalidInput("storage_connection.path is for NFS; an iSCSI connection has "
                               "address, port and target")
        port = data.port if data.port is not None else (old.port if old else ISCSI_PORT)
        return _check_portal(data.address or (old.address if old else None), port,
                             data.target or (old.target if old else None))
    raise InvalidInput(f"storage_connection.type {kind!r} is not supported (nfs or iscsi)")


def _nfs_version(value: str | None) -> str | None:
    if value is not None and value not in NFS_VERSIONS:
        raise InvalidInput(f"storage_connection.nfs_version {value!r} is not one of "
                           f"{', '.join(NFS_VERSIONS)}")
    return value


async def _shared_domains(session: AsyncSession) -> list[StorageDomain]:
    return list((await session.execute(select(StorageDomain).where(
        StorageDomain.storage_type.in_(_SHARED)).order_by(StorageDomain.name))).scalars())


async def all_connections(session: AsyncSession
                          ) -> list[tuple[uuid.UUID, Endpoint, StorageConnection | None]]:
    """Every connection: those domains were made on, then those added on their own."""
    found: list[tuple[uuid.UUID, Endpoint, StorageConnection | None]] = [
        (domain_connection_id(d), domain_endpoint(d), None) for d in await _shared_domains(session)]
    rows = (await session.execute(select(StorageConnection)
                                  .order_by(StorageConnection.created_at))).scalars()
    found += [(r.id, row_endpoint(r), r) for r in rows]
    return found


async def _refuse_duplicate(session: AsyncSession, endpoint: Endpoint,
                            other_than: uuid.UUID | None = None) -> None:
    """oVirt keeps one connection per export or portal and target."""
    for conn_id, existing, _row in await all_connections(session):
        if conn_id != other_than and existing == endpoint:
            raise Conflict(f"Cannot add or edit Storage Connection: the connection "
                           f"{_describe(endpoint)} already exists (id {conn_id}).")


def _describe(endpoint: Endpoint) -> str:
    if endpoint.type == StorageType.NFS:
        return f"{endpoint.address}:{endpoint.path}"
    return f"{endpoint.address}:{endpoint.port} {endpoint.target}"


async def find(session: AsyncSession, conn_id: uuid.UUID, *, for_update: bool = False
               ) -> StorageDomain | StorageConnection:
    """The domain whose own connection `conn_id` is, or the connection added on its own."""
    row = await session.get(StorageConnection, conn_id, with_for_update=for_update)
    if row is not None:
        return row
    for domain in await _shared_domains(session):
        if domain_connection_id(domain) == conn_id:
            return await lookup.get(session, StorageDomain, domain.id, for_update=for_update)
    raise NotFound(f"There is no storage connection with id {conn_id}.")


async def domains_using(session: AsyncSession, conn_id: uuid.UUID) -> list[StorageDomain]:
    return list((await session.execute(
        select(StorageDomain).join(StorageDomainConnection,
                                   StorageDomainConnection.storage_domain_id == StorageDomain.id)
        .where(StorageDomainConnection.connection_id == conn_id)
        .order_by(StorageDomain.name))).scalars())


async def connections_of(session: AsyncSession, domain: StorageDomain
                         ) -> list[StorageConnection]:
    """The connections added to `domain` besides its own."""
    return list((await session.execute(
        select(StorageConnection).join(
            StorageDomainConnection, StorageDomainConnection.connection_id == StorageConnection.id)
        .where(StorageDomainConnection.storage_domain_id == domain.id)
        .order_by(StorageConnection.created_at))).scalars())


async def add_connection(session: AsyncSession, box: SecretBox, data: ConnectionInput,
                         user: User) -> StorageConnection:
    if data.type is None:
        raise InvalidInput("storage_connection.type is required (nfs or iscsi)")
    if data.host is not None:  # oVirt connects that host; the engine checks it exists
        await lookup.resolve(session, Host, data.host, "storage_connection.host")
    endpoint = _endpoint(data.type.value, data, None)
    await _refuse_duplicate(session, endpoint)
    chap = check_chap(data.username, data.password, NO_CHAP, box)
    row = StorageConnection(id=uuid.uuid4(), type=endpoint.type, address=endpoint.address,
                            path=endpoint.path, port=endpoint.port, target=endpoint.target,
                            nfs_version=_nfs_version(data.nfs_version)
                            if endpoint.type == StorageType.NFS else None,
                            username=chap.username, password_sealed=chap.password_sealed)
    session.add(row)
    await session.flush()
    audit.record(session, f"Storage connection {_describe(endpoint)} was added by "
                 f"{user.user_name}", code=audit.STORAGE_CONNECTION_ADDED, user_id=user.id)
    return row


def _idle(domain: StorageDomain, force: bool) -> None:
    allowed = domain.status in _IDLE or (force and domain.status in (
        StorageDomainStatus.ACTIVE, StorageDomainStatus.INACTIVE))
    if not allowed:
        raise Conflict(f"Cannot edit the storage connection of Storage Domain {domain.name}: "
                       f"it is {domain.status}; switch it to maintenance first.")


async def update_connection(session: AsyncSession, box: SecretBox, conn_id: uuid.UUID,
                            data: ConnectionInput, user: User, *, force: bool = False
                            ) -> StorageDomain | StorageConnection:
    """A new address, path, port or target; a domain's own connection moves the domain."""
    found = await find(session, conn_id, for_update=True)
    if isinstance(found, StorageDomain):
        old = domain_endpoint(found)
        endpoint = _endpoint(old.type, data, old)
        if data.nfs_version not in (None, "auto"):
            raise InvalidInput("a domain's NFS version is the client's choice (auto)")
        chap = check_chap(data.username, data.password, domain_chap(found), box)
        _idle(found, force)
        await _refuse_duplicate(session, endpoint, other_than=conn_id)
        _move_domain(found, endpoint)
        found.chap_username, found.chap_password_sealed = chap.username, chap.password_sealed
        audit.record(session, f"Storage connection of Storage Domain {found.name} was changed "
                     f"from {_describe(old)} to {_describe(endpoint)} by {user.user_name}",
                     code=audit.STORAGE_CONNECTION_UPDATED, storage_domain_id=found.id,
                     data_center_id=found.data_center_id, user_id=user.id)
        return found
    old = row_endpoint(found)
    endpoint = _endpoint(old.type, data, old)
    chap = check_chap(data.username, data.password, Chap(found.username, found.password_sealed),
                      box)
    for domain in await domains_using(session, found.id):
        _idle(domain, force)
        if endpoint.target != domain_endpoint(domain).target:
            raise Conflict(f"Cannot edit Storage Connection: Storage Domain {domain.name} "
                           f"uses it, and its LUN is on target {domain_endpoint(domain).target}.")
    await _refuse_duplicate(session, endpoint, other_than=conn_id)
    found.address, found.path = endpoint.address, endpoint.path
    found.port, found.target = endpoint.port, endpoint.target
    found.username, found.password_sealed = chap.username, chap.password_sealed
    if endpoint.type == StorageType.NFS and data.nfs_version is not None:
        found.nfs_version = _nfs_version(data.nfs_version)
    audit.record(session, f"Storage connection {_describe(old)} was changed to "
                 f"{_describe(endpoint)} by {user.user_name}",
                 code=audit.STORAGE_CONNECTION_UPDATED, user_id=user.id)
    return found


def _move_domain(domain: StorageDomain, endpoint: Endpoint) -> None:
    if endpoint.type == StorageType.NFS:
        domain.address, domain.path = endpoint.address, endpoint.path or "/"
        return
    _target, _, lun = domain.path.rpartition("/")
    domain.address = f"{endpoint.address}:{endpoint.port}"
    domain.path = f"{endpoint.target}/{lun}"


async def remove_connection(session: AsyncSession, conn_id: uuid.UUID, user: User,
                            host: Ref | None = None) -> None:
    """Only a connection no domain uses goes (oVirt's rule)."""
    found = await find(session, conn_id, for_update=True)
    if host is not None:
        await lookup.resolve(session, Host, host, "host")
    if isinstance(found, StorageDomain):
        raise Conflict(f"Cannot remove Storage Connection: Storage Domain {found.name} was made "
                       "on it and uses it.")
    users = await domains_using(session, found.id)
    if users:
        raise Conflict(f"Cannot remove Storage Connection: Storage Domain(s) "
                       f"{', '.join(d.name for d in users)} use it.")
    audit.record(session, f"Storage connection {_describe(row_endpoint(found))} was removed by "
                 f"{user.user_name}", code=audit.STORAGE_CONNECTION_REMOVED, user_id=user.id)
    await session.delete(found)


async def attach_connection(session: AsyncSession, sd_id: uuid.UUID, ref: Ref | None,
                            user: User) -> StorageConnection:
    """Another portal of an iSCSI domain's target (oVirt's AttachStorageConnectionToStorageDomain)."""
    domain = await lookup.get(session, StorageDomain, sd_id, for_update=True)
    if ref is None or ref.id is None:
        raise InvalidInput("storage_connection is required (give its id)")
    if domain.storage_type != StorageType.ISCSI:
        raise Conflict(f"Cannot add a storage connection to Storage Domain {domain.name}: only "
                       "iSCSI domains take further connections.")
    if domain.status == StorageDomainStatus.LOCKED:
        raise Conflict(f"Cannot add a storage connection to Storage Domain {domain.name}: it "
                       "is locked.")
    try:
        found = await find(session, ref.id)
    except NotFound:
        raise InvalidInput(f"storage_connection {ref.id} does not exist") from None
    if isinstance(found, StorageDomain):
        raise Conflict(f"Cannot add the storage connection of Storage Domain {found.name} to "
                       "another domain.")
    if found.type != StorageType.ISCSI:
        raise Conflict("Cannot add an NFS storage connection to an iSCSI domain.")
    target = domain_endpoint(domain).target
    if found.target != target:
        raise Conflict(f"Cannot add the storage connection: it names target {found.target}, "
                       f"and the LUN of Storage Domain {domain.name} is on {target}.")
    if found.id in {c.id for c in await connections_of(session, domain)}:
        raise Conflict(f"Storage Domain {domain.name} already has this storage connection.")
    session.add(StorageDomainConnection(storage_domain_id=domain.id, connection_id=found.id))
    audit.record(session, f"Storage connection {_describe(row_endpoint(found))} was added to "
                 f"Storage Domain {domain.name} by {user.user_name}",
                 code=audit.STORAGE_CONNECTION_UPDATED, storage_domain_id=domain.id,
                 user_id=user.id)
    return found


async def detach_connection(session: AsyncSession, sd_id: uuid.UUID, conn_id: uuid.UUID,
                            user: User) -> None:
    domain = await lookup.get(session, StorageDomain, sd_id, for_update=True)
    if conn_id == domain_connection_id(domain):
        raise Conflict(f"Cannot take its own storage connection from Storage Domain "
                       f"{domain.name} (edit it to move the domain).")
    link = await session.get(StorageDomainConnection, (domain.id, conn_id))
    if link is None:
        raise NotFound(f"Storage Domain {domain.name} has no storage connection {conn_id}.")
    if domain.status == StorageDomainStatus.LOCKED:
        raise Conflict(f"Cannot take a storage connection from Storage Domain {domain.name}: "
                       "it is locked.")
    await session.delete(link)
    audit.record(session, f"A storage connection was taken from Storage Domain {domain.name} by "
                 f"{user.user_name}", code=audit.STORAGE_CONNECTION_UPDATED,
                 storage_domain_id=domain.id, user_id=user.id)
