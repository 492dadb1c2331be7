"""Direct LUN disks (oVirt's `disks` with `lun_storage`): a whole iSCSI LUN given to a VM,
which QEMU opens as a network disk (libiscsi). Overt keeps no volume on it: adding or
removing one changes only the engine's records, so neither needs a job.

A LUN on a CHAP target keeps the target's credentials with the disk (the password sealed).
With no job, the target is not asked: credentials are checked against those a host logged
in to that target with (`hosts.iscsi_logins`, checked by the target at the login), and a
disk that gives none takes the login's, as oVirt reuses a target's connection."""

from __future__ import annotations

import hmac
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Disk, DiskAttachment, Host, User
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.model.names import check_name
from overt.engine.model.status import DiskStatus
from overt.engine.queries.shared_storage import lun_holders
from overt.engine.secrets import SecretBox
from overt.engine.services.host_iscsi import needs_resolving
from overt.engine.services.inputs import DiskInput, LogicalUnitInput
from overt.engine.services.storage_connections import NO_CHAP, Chap, check_chap
from overt.engine.services.storage_shared import check_logical_unit


async def add_lun_disk(session: AsyncSession, data: DiskInput, user: User,
                       box: SecretBox | None = None) -> Disk:
    """A disk that is the LUN `data.lun`; refused (409) while the LUN holds a storage
    domain or is another direct LUN disk, (400) with CHAP credentials other than those a
    host logged in to the target with, or none to check them against."""
    assert data.lun is not None
    name = check_name("disk", data.name or "")
    if data.storage_domain is not None:
        raise InvalidInput("a direct LUN disk is on no storage domain: give "
                           "disk.lun_storage or disk.storage_domains, not both")
    if data.format not in (None, "raw"):
        raise InvalidInput("a direct LUN disk is raw: give disk.format raw (or none)")
    if data.content_type not in (None, "data"):
        raise InvalidInput("a direct LUN disk holds data, not an ISO image")
    # The size is the LUN's: the storage monitor reads it from the target (a size the
    # client gives is not taken; oVirt's comes from the LUN list of a discovery too).
    size = 0
    if needs_resolving(data.lun.id, data.lun.lun_mapping):
        data.lun.lun_mapping = await _logged_in_lun(session, data.lun)
    portal, path = check_logical_unit(data.lun)
    domain, other = await lun_holders(session, portal, path)
    if domain is not None:
        raise Conflict(f"Cannot add Disk. The LUN {path} of {portal} is used by storage "
                       f"domain {domain}.")
    if other is not None:
        raise Conflict(f"Cannot add Disk. The LUN {path} of {portal} is already direct LUN "
                       f"disk {other}.")
    chap = await _target_chap(session, data.lun, box)
    disk = Disk(id=uuid.uuid4(), name=name, description=data.description or "",
                storage_domain_id=None, lun_portal=portal, lun_path=path,
                lun_chap_username=chap.username, lun_chap_password_sealed=chap.password_sealed,
                provisioned_size=size, actual_size=size, format="raw", sparse=False,
                status=DiskStatus.OK, image_path="", shareable=False, content_type="data")
    session.add(disk)
    await session.flush()
    audit.record(session, f"Direct LUN disk {name} (LUN {path} of {portal}) was added by "
                 f"{user.user_name}", code=audit.DISK_CREATED, user_id=user.id)
    return disk


async def _target_chap(session: AsyncSession, unit: LogicalUnitInput,
                       box: SecretBox | None) -> Chap:
    """The CHAP credentials of the disk's target: those given, when a host logged in to
    the target with the same ones; else a login's own; else none."""
    port = unit.port or 3260
    logins = [entry for entries in (await session.execute(select(Host.iscsi_logins).where(
        Host.iscsi_logins.is_not(None)).order_by(Host.name))).scalars()
        for entry in entries or []
        if (entry["address"], entry["port"], entry["target"]) == (unit.address, port,
                                                                   unit.target)]
    given = unit.username is not None or unit.password is not None
    if not given:
        with_chap = [e for e in logins if e.get("username")]
        if with_chap and not any(not e.get("username") for e in logins):
            return Chap(with_chap[0]["username"], with_chap[0]["password_sealed"])
        return NO_CHAP
    if box is None:
        raise InvalidInput("a direct LUN disk with CHAP credentials is added on its own "
                           "(POST /disks or a VM's diskattachments), not with its VM")
    chap = check_chap(unit.username, unit.password, NO_CHAP, box, "logical_unit")
    if chap.username is None:
        return NO_CHAP
    for entry in logins:
        if entry.get("username") == chap.username and hmac.compare_digest(
                box.open(entry.get("password_sealed") or "").reveal(), unit.password or ""):
            return chap
    if not logins:
        raise InvalidInput(f"no host is logged in to {unit.target} on {unit.address}:{port} "
                           "to check the logical unit's CHAP credentials against (iscsilogin "
                           "first)")
    raise InvalidInput(f"the CHAP user name or password of the logical unit is not the one "
                       f"the hosts logged in to {unit.target} on {unit.address}:{port} with")


async def _logged_in_lun(session: AsyncSession, unit: LogicalUnitInput) -> int:
    """The number of the LUN whose SCSI id is `unit.id`, as the last LUN list of a host
    logged in to its target saw it (`hosts.iscsi_logins`); 400 when none did."""
    port = unit.port or 3260
    hosts = (await session.execute(select(Host).where(Host.iscsi_logins.is_not(None))
                                   .order_by(Host.name))).scalars().all()
    for host in hosts:
        for entry in host.iscsi_logins or []:
            if (entry["address"], entry["port"], entry["target"]) != (
                    unit.address, port, unit.target):
                continue
            for lun in entry.get("luns", []):
                if lun["scsi_id"] == unit.id:
                    return int(lun["lun"])
    raise InvalidInput(f"logical_unit.id {unit.id!r} is neither a LUN number nor the SCSI id "
                       f"of a LUN of {unit.target} on {unit.address}:{port} that a host "
                       "logged in to that target has listed (iscsilogin first)")


async def remove_lun_disk(session: AsyncSession, disk: Disk, user: User) -> None:
    """Forget a direct LUN disk (its LUN keeps its data); refused while a VM uses it."""
    attached = (await session.execute(select(DiskAttachment.pk).where(
        DiskAttachment.disk_id == disk.id))).first()
    if attached is not None:
        raise Conflict(f"Cannot remove disk {disk.name}: it is attached to a VM")
    audit.record(session, f"Direct LUN disk {disk.name} was removed by {user.user_name}",
                 code=audit.DISK_REMOVED, user_id=user.id)
    await session.delete(disk)
