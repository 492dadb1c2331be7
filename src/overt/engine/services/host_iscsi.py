"""oVirt's iSCSI discovery, login and LUN list on a host: each is a job
(`IscsiOnHost`) the API waits for, since only a host reaches the portal (through
libiscsi; there is no kernel initiator, so no session stays open: a login is a LUN list
that worked, remembered on the host's row).

A LUN of the list is `used` when a storage domain or a direct LUN disk of this engine is
on it (its portal and `target/LUN`), else `free`. An iSCSI domain or direct LUN disk may
name its LUN by the SCSI id of this list instead of its number (`lun_number`).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Cluster, Disk, DiskAttachment, Host, Job, StorageDomain, User, Vm
from overt.engine.jobs.kinds import IscsiOnHost
from overt.engine.model.errors import Conflict, InvalidInput, NotFound
from overt.engine.model.node_states import ON_HOST
from overt.engine.model.status import HostStatus, StorageDomainStatus, StorageType
from overt.engine.queries import lookup
from overt.engine.queries.shared_storage import lun_holders
from overt.engine.secrets import SecretBox
from overt.engine.services.jobs import JobSubmitter
from overt.engine.services.storage_connections import NO_CHAP, check_chap
from overt.protocol.storage import IQN, SERVER

_IQN_RE = re.compile(IQN)
_SERVER_RE = re.compile(SERVER)
WAIT_S = 60.0  # how long the API waits for the host's answer


@dataclass
class IscsiDetailsInput:
    """oVirt's `iscsi` (IscsiDetails) of an iscsidiscover or iscsilogin action."""

    address: str | None = None
    port: int | None = None
    target: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)


async def submit(session: AsyncSession, jobs: JobSubmitter, box: SecretBox,
                 host_id: uuid.UUID, op: str, details: IscsiDetailsInput | None,
                 user: User) -> Job:
    """The job that discovers (`discover`), logs in to a target (`login`) or lists LUNs
    (`luns`: of `details.target`, or without details of every target the host logged in
    to); 409 when the host is not up, 400 for a malformed portal or target."""
    host = await lookup.get(session, Host, host_id)
    spec: dict[str, Any] = {"host_id": host.id, "op": op}
    if details is not None:
        if not details.address or not _SERVER_RE.match(details.address):
            raise InvalidInput(f"iscsi.address {details.address!r} is not a host name or an "
                               "address")
        port = details.port or 3260
        if not 0 < port <= 65535:
            raise InvalidInput(f"iscsi.port {port} is not a port")
        if op != "discover":
            if not details.target or not _IQN_RE.match(details.target):
                raise InvalidInput(f"iscsi.target {details.target!r} is not an iSCSI name "
                                   "(iqn.)")
            spec["target"] = details.target
        chap = check_chap(details.username or None, details.password or None, NO_CHAP, box,
                          "iscsi")
        spec.update(address=details.address, port=port, chap_username=chap.username,
                    chap_password_sealed=chap.password_sealed)
    elif op != "luns":
        raise InvalidInput("iscsi (address, and target for a login) is required")
    if host.status != HostStatus.UP:
        raise Conflict(f"Cannot use iSCSI on host {host.name}: it is {host.status}, not up.")
    what = {"discover": f"Discovering the iSCSI targets of {spec.get('address')}",
            "login": f"Logging in to iSCSI target {spec.get('target')}",
            "luns": "Listing the iSCSI LUNs"}[op]
    return await jobs.submit(session, IscsiOnHost(**spec), description=f"{what} on host "
                             f"{host.name}", owner_id=user.id)


async def logout(session: AsyncSession, host_id: uuid.UUID,
                 details: IscsiDetailsInput | None) -> list[str]:
    """Forget the host's login to `details.target` on `details.address` (on every port
    when `details.port` is not given): a DB change only, since no node keeps an iSCSI
    session (QEMU's libiscsi logs in for each disk it opens). Refused (409, nothing
    changed) while an active iSCSI domain of the host's data center or a direct LUN disk
    of a VM on the host uses the target, for oVirt would then lose the host's paths;
    404 when the host has no such login. Returns the portals logged out of."""
    if details is None or not details.address or not details.target:
        raise InvalidInput("iscsi.address and iscsi.target are required")
    if not _SERVER_RE.match(details.address):
        raise InvalidInput(f"iscsi.address {details.address!r} is not a host name or an "
                           "address")
    if not _IQN_RE.match(details.target):
        raise InvalidInput(f"iscsi.target {details.target!r} is not an iSCSI name (iqn.)")
    host = await lookup.get(session, Host, host_id, for_update=True)
    entries = [dict(entry) for entry in host.iscsi_logins or []]
    gone = [e for e in entries if e["address"] == details.address
            and e["target"] == details.target
            and (details.port is None or int(e["port"]) == details.port)]
    if not gone:
        where = details.address if details.port is None else \
            f"{details.address}:{details.port}"
        raise NotFound(f"Host {host.name} is not logged in to iSCSI target {details.target} "
                       f"on {where}.")
    portals = sorted({f"{e['address']}:{e['port']}" for e in gone})
    user = await _target_user(session, host, portals, details.target)
    if user is not None:
        raise Conflict(f"Cannot log host {host.name} out of iSCSI target {details.target}: "
                       f"{user} uses it.")
    host.iscsi_logins = [e for e in entries if e not in gone] or None
    return portals


async def _target_user(session: AsyncSession, host: Host, portals: list[str],
                       target: str) -> str | None:
    """What uses `target` on one of `portals` through `host`: an active iSCSI domain of the
    host's data center, or a direct LUN disk of a VM running on (or migrating to) it."""
    on_target = f"{target}/%"
    data_center_id = (await session.execute(select(Cluster.data_center_id).where(
        Cluster.id == host.cluster_id))).scalar_one_or_none()
    domain = (await session.execute(select(StorageDomain.name).where(
        StorageDomain.storage_type == StorageType.ISCSI.value,
        StorageDomain.status == StorageDomainStatus.ACTIVE,
        StorageDomain.address.in_(portals), StorageDomain.path.like(on_target),
        or_(StorageDomain.data_center_id == data_center_id,
            StorageDomain.host_id == host.id)))).scalars().first()
    if domain is not None:
        return f"active storage domain {domain}"
    found = (await session.execute(select(Disk.name, Vm.name).join(
        DiskAttachment, DiskAttachment.disk_id == Disk.id).join(
        Vm, Vm.id == DiskAttachment.vm_id).where(
        Disk.lun_portal.in_(portals), Disk.lun_path.like(on_target),
        Vm.status.in_(ON_HOST),
        or_(Vm.host_id == host.id, Vm.migration_host_id == host.id)))).first()
    if found is not None:
        return f"direct LUN disk {found[0]} of running VM {found[1]}"
    return None


@dataclass(frozen=True)
class ListedLun:
    address: str
    port: int
    target: str
    username: str | None
    lun: int
    scsi_id: str
    size_bytes: int
    serial: str
    vendor: str
    product: str
    used_by: str | None  # the domain or direct LUN disk of this engine on it


async def listed_luns(session: AsyncSession, result: dict[str, Any]) -> list[ListedLun]:
    """The LUNs of a finished `luns`/`login` job, each with who of this engine uses it."""
    found = []
    for login in result.get("logins", []):
        portal = f"{login['address']}:{login['port']}"
        for lun in login["luns"]:
            domain, disk = await lun_holders(session, portal, f"{login['target']}/{lun['lun']}")
            found.append(ListedLun(
                address=login["address"], port=login["port"], target=login["target"],
                username=login.get("username"), lun=lun["lun"], scsi_id=lun["scsi_id"],
                size_bytes=lun["size_bytes"], serial=lun.get("serial", ""),
                vendor=lun.get("vendor", ""), product=lun.get("product", ""),
                used_by=domain or disk))
    return found


def lun_number(result: dict[str, Any], scsi_id: str, address: str, port: int,
               target: str) -> int:
    """The number of the LUN whose SCSI id is `scsi_id` in a finished LUN list of
    `target`; 400 when the target has no such LUN."""
    for login in result.get("logins", []):
        for lun in login["luns"]:
            if lun["scsi_id"] == scsi_id:
                return int(lun["lun"])
    raise InvalidInput(f"logical_unit.id {scsi_id!r} is neither a LUN number nor the SCSI id "
                       f"of a LUN of {target} on {address}:{port}")


def needs_resolving(lun_id: str | None, lun_mapping: int | None) -> bool:
    """Whether a logical unit names its LUN by SCSI id (not by number)."""
    return lun_mapping is None and bool(lun_id) and not (lun_id or "").isdigit()
