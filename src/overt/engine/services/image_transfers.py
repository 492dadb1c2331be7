"""Image transfers (oVirt's `imagetransfers`): a disk's data uploaded or downloaded by HTTP.

A transfer locks its disk, exports the disk's volume with qemu-nbd and gives an imageio
daemon a ticket for it: an unguessable id, an expiry, the disk's size and only the
operations of its direction. As in oVirt, the data moves on a host that reaches the
volume (given as `host`, else one up in the domain's data center): the export and the
ticket live on that node's daemon (`transfer_url`), and the engine's own daemon holds a
ticket of the same id that proxies to it (`proxy_url`). A local domain on the engine's
own machine (`overt demo`) is served by the engine's daemon alone, as is an NFS volume
while no host of its data center is up.
`finalize` takes the ticket away, flushes and closes the volume and unlocks the disk;
`cancel` does the same, and a cancelled upload's disk is removed, as in oVirt.

Each transfer is also a job row (oVirt shows transfers as jobs), in a queue state the
worker never claims, named after the API process serving it; when that process starts
again, its transfers that were cut short end as a cancel would, so no disk stays locked.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.database import Database
from overt.engine.db.tables import (
    Cluster,
    Disk,
    DiskAttachment,
    Host,
    Job,
    StorageDomain,
    User,
    Vm,
    utcnow,
)
from overt.engine.imageio.daemon import ImageioDaemon
from overt.engine.imageio.exports import NbdExport
from overt.engine.model.errors import Conflict, InvalidInput, NotFound, Unavailable
from overt.engine.model.iso_image import DESCRIPTOR_OFFSET, HEADER_BYTES, is_iso9660
from overt.engine.model.status import (
    DiskStatus,
    HostStatus,
    JobStatus,
    LogSeverity,
    StorageType,
    VmStatus,
)
from overt.engine.nodes import NodeClient, NodeCommandFailed
from overt.engine.pki.authority import EnginePki
from overt.engine.queries import lookup
from overt.engine.queries.shared_storage import extent_of, lun_of
from overt.engine.secrets import SecretBox
from overt.engine.services.devices import remove_disk_job
from overt.engine.services.jobs import JobSubmitter
from overt.protocol.commands import Returns
from overt.protocol.imageio import ImageExportStart, ImageExportStop, ImageTicket
from overt.protocol.storage import IscsiExtentTarget, IscsiLunRef

R = TypeVar("R", bound=BaseModel)
Op = Literal["read", "write"]
TicketAction = Literal["add", "extend", "remove", "info"]

log = logging.getLogger(__name__)

JOB_ACTION = "image.transfer"
JOB_STATE = "transfer"  # served by an API process, never claimed by a worker
TICKET_TIMEOUT_S = 3600  # a ticket's life; `extend` renews it
KEEP_ENDED_S = 3600
DEFAULT_INACTIVITY_S = 60
MAX_INACTIVITY_S = 86400


class Direction(StrEnum):
    UPLOAD = "upload"
    DOWNLOAD = "download"


class Phase(StrEnum):
    """oVirt's ImageTransferPhase values that Overt's transfers pass through."""

    INITIALIZING = "initializing"
    TRANSFERRING = "transferring"
    PAUSED_USER = "paused_user"
    FINALIZING_SUCCESS = "finalizing_success"
    FINALIZING_FAILURE = "finalizing_failure"
    FINISHED_SUCCESS = "finished_success"
    CANCELLED_USER = "cancelled_user"
    CANCELLED_SYSTEM = "cancelled_system"
    FINISHED_FAILURE = "finished_failure"


ENDED = frozenset({Phase.FINISHED_SUCCESS, Phase.FINISHED_FAILURE})
# The phase an action needs, per action.
ACTION_FROM: dict[str, frozenset[Phase]] = {
    "finalize": frozenset({Phase.TRANSFERRING, Phase.PAUSED_USER}),
    "cancel": frozenset({Phase.TRANSFERRING, Phase.PAUSED_USER}),
    "pause": frozenset({Phase.TRANSFERRING}),
    "resume": frozenset({Phase.PAUSED_USER}),
    "extend": frozenset({Phase.TRANSFERRING, Phase.PAUSED_USER}),
}


@dataclass(frozen=True)
class TransferRequest:
    disk_id: uuid.UUID | None
    direction: Direction
    format: str | None  # the format of the data on the wire: raw (guest data) or cow
    inactivity_timeout: int | None = None
    host_id: uuid.UUID | None = None  # the host to move the data on (oVirt's `host`)


@dataclass(frozen=True)
class NodeSide:
    """The host serving a transfer: a copy of what NodeClient needs to reach it."""

    host: Host
    port: int

    @property
    def base_url(self) -> str:
        address = self.host.address
        return f"https://{f'[{address}]' if ':' in address else address}:{self.port}"


@dataclass
class Transfer:
    id: uuid.UUID
    disk_id: uuid.UUID
    direction: Direction
    format: str
    image_size: int
    inactivity_timeout: int
    ticket_id: str
    transfer_url: str
    source: str
    export: NbdExport | None = None  # on the engine's machine
    node: NodeSide | None = None  # on a host
    proxy_url: str = ""
    phase: Phase = Phase.INITIALIZING
    transferred: int = 0  # bytes, as the daemon last counted them
    created: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def ops(self) -> list[Op]:
        return ["read", "write"] if self.direction is Direction.UPLOAD else ["read"]

    def ticket(self) -> dict[str, object]:
        """The engine daemon's ticket: the local export, or (proxy) the node's ticket."""
        url = self.export.url if self.export is not None else self.transfer_url
        return {"uuid": self.ticket_id, "size": self.image_size, "url": url,
                "timeout": TICKET_TIMEOUT_S, "inactivity_timeout": self.inactivity_timeout,
                "ops": self.ops, "sparse": True, "transfer_id": str(self.id)}


def check_action(transfer: Transfer, action: str) -> None:
    if transfer.phase not in ACTION_FROM[action]:
        raise Conflict(f"Cannot {action} image transfer {transfer.id}: it is "
                       f"{transfer.phase.value}")


def volume_source(domain: StorageDomain, disk: Disk, *, on_engine: bool = True,
                  box: SecretBox | None = None) -> str:
    """Where qemu-nbd opens the disk's volume: a file of a local domain (on this machine
    when `on_engine`), or QEMU's URL of an NFS volume."""
    if domain.storage_type == StorageType.NFS.value and domain.address:
        return f"nfs://{domain.address}{domain.path.rstrip('/')}/{disk.image_path}"
    if domain.storage_type == StorageType.ISCSI.value:
        if on_engine:
            raise Conflict(f"Cannot transfer disk {disk.name}: iSCSI volumes move on a host "
                           "and no host of its data center is up")
        return lun_url(lun_of(domain, box))
    path = Path(domain.path) / disk.image_path
    if on_engine and not path.is_file():
        raise Conflict(f"Cannot transfer disk {disk.name}: its volume on local domain "
                       f"{domain.name} is not on the engine's machine")
    return str(path)


def on_engine_machine(domain: StorageDomain, disk: Disk) -> bool:
    """A local domain whose volume is a file here (`overt demo`): the engine serves it."""
    return domain.storage_type not in (StorageType.NFS.value, StorageType.ISCSI.value) \
        and (Path(domain.path) / disk.image_path).is_file()


async def pick_host(session: AsyncSession, domain: StorageDomain,
                    wanted: uuid.UUID | None) -> Host | None:
    """The host to move a disk's data on: `wanted` if it is up and reaches the domain, else
    the first up host that does (a local domain: its own host; NFS: any of its data
    center). None: no host is up (NFS is then served by the engine, if it reaches it)."""
    query = select(Host).where(Host.status == HostStatus.UP, Host.host_uuid.is_not(None))
    if domain.storage_type in (StorageType.NFS.value, StorageType.ISCSI.value):
        query = query.join(Cluster, Cluster.id == Host.cluster_id).where(
            Cluster.data_center_id == domain.data_center_id)
    else:
        query = query.where(Host.id == domain.host_id)
    hosts = list((await session.execute(query.order_by(Host.name))).scalars())
    if wanted is not None:
        chosen = next((h for h in hosts if h.id == wanted), None)
        if chosen is None:
            host = await lookup.get(session, Host, wanted)
            raise Conflict(f"Cannot transfer through host {host.name}: it is not up or does "
                           f"not reach storage domain {domain.name}")
        return chosen
    if not hosts and domain.storage_type == StorageType.ISCSI.value:
        raise Conflict(f"Cannot transfer disks of iSCSI domain {domain.name}: no host of its "
                       "data center is up")
    if not hosts and domain.storage_type != StorageType.NFS.value:
        raise Conflict(f"Cannot transfer disks of local domain {domain.name}: its host is "
                       "not up")
    return hosts[0] if hosts else None


def _reach(host: Host) -> Host:
    """A detached copy of what reaching the host takes (the session ends before use)."""
    return Host(id=host.id, name=host.name, address=host.address, port=host.port,
                host_uuid=host.host_uuid, certificate_fingerprint=host.certificate_fingerprint)


class ImageTransfers:
    """The transfers this API process serves, and the daemon that carries their data."""

    def __init__(self, daemon: ImageioDaemon, public_address: str, sockets: Path, *,
                 server_name: str, nodes: NodeClient | None = None,
                 pki: EnginePki | None = None, secrets: SecretBox) -> None:
        self.daemon = daemon
        self.secrets = secrets  # opens the CHAP passwords of iSCSI domains
        self.nodes = nodes
        self.pki = pki
        self.server_name = server_name
        self.public_address = public_address
        self.sockets = sockets
        self._transfers: dict[uuid.UUID, Transfer] = {}

    def all(self) -> list[Transfer]:
        return sorted(self._transfers.values(), key=lambda t: t.created)

    def get(self, transfer_id: uuid.UUID) -> Transfer:
        found = self._transfers.get(transfer_id)
        if found is None:
            raise NotFound(f"Image transfer {transfer_id} does not exist")
        return found

    async def start(self, session: AsyncSession, request: TransferRequest, user: User
                    ) -> Transfer:
        if request.disk_id is None:
            raise InvalidInput("image_transfer.disk is required (give its id)")
        if request.format not in (None, "raw", "cow"):
            raise InvalidInput("image_transfer.format must be raw or cow")
        inactivity = request.inactivity_timeout or DEFAULT_INACTIVITY_S
        if not 1 <= inactivity <= MAX_INACTIVITY_S:
            raise InvalidInput(f"image_transfer.inactivity_timeout must be 1 to "
                               f"{MAX_INACTIVITY_S} seconds")
        disk = await lookup.get(session, Disk, request.disk_id, for_update=True)
        wire = request.format or disk.format  # oVirt: the disk's format unless given
        if request.direction is Direction.UPLOAD and wire == "cow":
            raise InvalidInput("Upload guest data with image_transfer.format raw (as the "
                               "SDK's upload_disk.py does); the volume's format stays the disk's")
        await _check_disk(session, disk)
        domain = await lookup.domain_of(session, disk)
        host = None
        if self.nodes is not None and not on_engine_machine(domain, disk):
            host = await pick_host(session, domain, request.host_id)
        source = volume_source(domain, disk, on_engine=host is None, box=self.secrets)
        transfer_id = uuid.uuid4()
        export_format = ("qcow2" if disk.format == "cow" else "raw") if wire == "raw" else "raw"
        # format=cow of a qcow2 volume: the volume's own bytes, as many as the volume has.
        own_bytes = wire == "cow" and disk.format == "cow"
        ticket_id = str(uuid.uuid4())
        await self.daemon.ensure_started()
        proxy_url = f"https://{self.public_address}:{self.daemon.port}/images/{ticket_id}"
        transfer = Transfer(
            id=transfer_id, disk_id=disk.id, direction=request.direction, format=wire,
            image_size=_file_size(source) if own_bytes and host is None
            else disk.provisioned_size,
            inactivity_timeout=inactivity, ticket_id=ticket_id, transfer_url=proxy_url,
            source=source, proxy_url=proxy_url)
        if host is None:
            self.sockets.mkdir(mode=0o700, parents=True, exist_ok=True)
            transfer.export = NbdExport(source, export_format,
                                        self.sockets / f"{transfer_id}.sock",
                                        read_only=request.direction is Direction.DOWNLOAD)
            await transfer.export.start()
        else:
            await self._open_on_node(transfer, host, export_format, _extent(domain, disk, self.secrets),
                                     own_bytes=own_bytes)
        try:
            await self._add_tickets(transfer)
        except BaseException:
            await self._close_export(transfer)
            raise
        transfer.phase = Phase.TRANSFERRING
        self._transfers[transfer.id] = transfer
        disk.status = DiskStatus.LOCKED
        verb = "Uploading" if request.direction is Direction.UPLOAD else "Downloading"
        session.add(Job(id=transfer.id, action=JOB_ACTION, description=f"{verb} disk {disk.name}",
                        params={"disk_id": str(disk.id), "direction": request.direction.value,
                                **({"host_id": str(host.id)} if host is not None else {})},
                        state=JOB_STATE, status=JobStatus.STARTED, claimed_by=self.server_name,
                        owner_id=user.id, auto_cleared=True))
        audit.record(session, f"Image {request.direction.value} of disk {disk.name} was "
                     f"initiated by {user.user_name}", code=audit.TRANSFER_IMAGE_INITIATED,
                     storage_domain_id=domain.id, user_id=user.id)
        return transfer

    async def _open_on_node(self, transfer: Transfer, host: Host, export_format: str,
                            extent: IscsiExtentTarget | None = None, *,
                            own_bytes: bool = False) -> None:
        """The volume exported on `host`, its daemon running with a certificate of the
        server CA for the host's own key and address (what the SDK's clients trust);
        with `own_bytes`, the qcow2 volume's own bytes, whose length the host reads."""
        if self.pki is None or host.certificate_pem is None or host.host_uuid is None:
            raise Conflict(f"Cannot transfer through host {host.name}: it has no certificate")
        try:
            certificate = self.pki.issue_imageio_certificate(host.certificate_pem,
                                                             host.host_uuid, host.address)
        except ValueError as exc:
            raise Conflict(f"Cannot transfer through host {host.name}: {exc}") from None
        command = ImageExportStart(
            transfer_id=transfer.id, source=transfer.source,
            format="qcow2" if export_format == "qcow2" else "raw",
            read_only=transfer.direction is Direction.DOWNLOAD, extent=extent,
            own_bytes=own_bytes, certificate_pem=certificate, ca_pem=self.pki.ca_pem())
        reached = _reach(host)
        started = await self._node_call(reached, command)
        transfer.node = NodeSide(reached, started.port)
        if own_bytes:
            if started.size is None:
                await self._close_export(transfer)
                raise Conflict(f"Host {host.name} cannot serve a volume's own bytes "
                               "(format cow): download guest data with format raw")
            transfer.image_size = started.size
        transfer.transfer_url = f"{transfer.node.base_url}/images/{transfer.ticket_id}"

    async def _node_call(self, host: Host, command: Returns[R]) -> R:
        assert self.nodes is not None
        try:
            return await self.nodes.call(host, command, timeout_s=60)
        except NodeCommandFailed as exc:
            raise Unavailable(f"Image transfer on host {exc}") from None

    async def _node_ticket(self, transfer: Transfer, action: TicketAction, timeout_s: int = 0
                           ) -> dict[str, Any] | None:
        assert transfer.node is not None
        reply = await self._node_call(transfer.node.host, ImageTicket(
            action=action, transfer_id=transfer.id, ticket_id=transfer.ticket_id,
            ops=transfer.ops, size=transfer.image_size, timeout_s=timeout_s,
            inactivity_timeout_s=transfer.inactivity_timeout))
        info: dict[str, Any] | None = reply.info
        return info

    async def _add_tickets(self, transfer: Transfer) -> None:
        if transfer.node is not None:
            await self._node_ticket(transfer, "add", TICKET_TIMEOUT_S)
        await self.daemon.add_ticket(transfer.ticket())

    async def _remove_tickets(self, transfer: Transfer) -> None:
        await self.daemon.remove_ticket(transfer.ticket_id)
        if transfer.node is not None:
            await self._node_ticket(transfer, "remove")

    async def _ticket_info(self, transfer: Transfer) -> dict[str, Any] | None:
        """The serving daemon's view (a proxied client's activity reaches the node too)."""
        if transfer.node is not None:
            return await self._node_ticket(transfer, "info")
        return await self.daemon.ticket_info(transfer.ticket_id)

    async def _close_export(self, transfer: Transfer) -> None:
        if transfer.export is not None:
            await transfer.export.stop()
        if transfer.node is not None:
            await self._node_call(transfer.node.host, ImageExportStop(transfer_id=transfer.id))

    async def _close(self, transfer: Transfer) -> None:
        await self._remove_tickets(transfer)
        await self._close_export(transfer)

    async def finalize(self, session: AsyncSession, jobs: JobSubmitter, transfer: Transfer,
                       user: User) -> str | None:
        """Close the transfer; the disk is ready. An upload into an ISO disk must have
        written an ISO 9660 image: other bytes fail the transfer and the disk is removed
        (as a cancelled upload's). Returns that refusal's reason, else None."""
        check_action(transfer, "finalize")
        disk = await lookup.get(session, Disk, transfer.disk_id, for_update=True)
        refusal = await self._iso_refusal(transfer, disk)
        if refusal is not None:
            transfer.phase = Phase.FINALIZING_FAILURE
            await self._close(transfer)
            disk.status = DiskStatus.OK
            await remove_disk_job(session, jobs, disk, user)
            transfer.phase = Phase.FINISHED_FAILURE
            await _end_job(session, transfer.id, succeeded=False)
            audit.record(session, f"Image upload of disk {disk.name} failed: {refusal}",
                         code=audit.TRANSFER_IMAGE_FAILED, user_id=user.id,
                         severity=LogSeverity.ERROR)
            return refusal
        transfer.phase = Phase.FINALIZING_SUCCESS
        await self._close(transfer)
        disk.status = DiskStatus.OK
        if transfer.export is not None and not transfer.source.startswith("nfs://"):
            disk.actual_size = _allocated(transfer.source)
        transfer.phase = Phase.FINISHED_SUCCESS
        await _end_job(session, transfer.id, succeeded=True)
        audit.record(session, f"Image {transfer.direction.value} of disk {disk.name} "
                     f"succeeded", code=audit.TRANSFER_IMAGE_SUCCEEDED, user_id=user.id)
        return None

    async def _iso_refusal(self, transfer: Transfer, disk: Disk) -> str | None:
        """Why an upload into an ISO disk is not an ISO (None: it is, or not an ISO disk)."""
        if transfer.direction is not Direction.UPLOAD or disk.content_type != "iso":
            return None
        head = await self.daemon.read_head(transfer.ticket_id,
                                           min(HEADER_BYTES, transfer.image_size))
        if is_iso9660(head):
            return None
        return ("the uploaded data is not an ISO 9660 image (no CD001 volume descriptor at "
                f"byte {DESCRIPTOR_OFFSET}); the disk was removed. Upload a .iso file.")

    async def cancel(self, session: AsyncSession, jobs: JobSubmitter, transfer: Transfer,
                     user: User, *, phase: Phase = Phase.CANCELLED_USER) -> None:
        """Stop the transfer; an upload's half-written disk is removed, as in oVirt."""
        check_action(transfer, "cancel")
        transfer.phase = phase
        await self._close(transfer)
        disk = await lookup.get(session, Disk, transfer.disk_id, for_update=True)
        disk.status = DiskStatus.OK
        if transfer.direction is Direction.UPLOAD:
            await remove_disk_job(session, jobs, disk, user)
        transfer.phase = Phase.FINISHED_FAILURE
        await _end_job(session, transfer.id, succeeded=False)
        who = "the engine: its client was idle too long" \
            if phase is Phase.CANCELLED_SYSTEM else user.user_name
        audit.record(session, f"Image {transfer.direction.value} of disk {disk.name} was "
                     f"cancelled by {who}", code=audit.TRANSFER_IMAGE_CANCELLED,
                     user_id=user.id)

    async def pause(self, transfer: Transfer) -> None:
        """No data moves while paused: the daemon forgets the ticket until `resume`."""
        check_action(transfer, "pause")
        await self._remove_tickets(transfer)
        transfer.phase = Phase.PAUSED_USER

    async def resume(self, transfer: Transfer) -> None:
        check_action(transfer, "resume")
        await self._add_tickets(transfer)
        transfer.phase = Phase.TRANSFERRING

    async def extend(self, transfer: Transfer) -> None:
        check_action(transfer, "extend")
        if transfer.phase is Phase.TRANSFERRING:
            await self.daemon.extend_ticket(transfer.ticket_id, TICKET_TIMEOUT_S)
            if transfer.node is not None:
                await self._node_ticket(transfer, "extend", TICKET_TIMEOUT_S)

    async def watch(self, db: Database, jobs: JobSubmitter, interval_s: float = 2.0) -> None:
        """Cancel transfers whose client stayed idle past their inactivity timeout (oVirt's
        engine does too), so an abandoned transfer does not keep its disk locked."""
        while True:
            await asyncio.sleep(interval_s)
            self._forget_ended()
            for transfer in [t for t in self._transfers.values()
                             if t.phase is Phase.TRANSFERRING]:
                try:
                    info = await self._ticket_info(transfer)
                    if info is not None:
                        transfer.transferred = int(info.get("transferred", 0))
                        if info.get("active") or info.get("idle_time", 0) <= \
                                transfer.inactivity_timeout:
                            continue
                    async with db.transaction() as session:
                        job = await session.get(Job, transfer.id)
                        owner = await session.get(User, job.owner_id) \
                            if job is not None and job.owner_id else None
                        if owner is not None and transfer.phase is Phase.TRANSFERRING:
                            await self.cancel(session, jobs, transfer, owner,
                                              phase=Phase.CANCELLED_SYSTEM)
                except Exception:
                    log.exception("could not check image transfer %s", transfer.id)

    def _forget_ended(self) -> None:
        """Ended transfers stay readable for an hour (clients poll them to the end)."""
        horizon = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=KEEP_ENDED_S)
        for transfer_id in [t.id for t in self._transfers.values()
                            if t.phase in ENDED and t.created < horizon]:
            del self._transfers[transfer_id]

    async def recover(self, db: Database, jobs: JobSubmitter) -> int:
        """End the transfers an earlier run of this API process left (it died mid-way):
        their disks are unlocked, an upload's half-written disk removed."""
        async with db.transaction() as session:
            left = (await session.execute(select(Job).where(
                Job.action == JOB_ACTION, Job.state == JOB_STATE,
                Job.claimed_by == self.server_name).with_for_update())).scalars().all()
            for job in left:
                disk = await session.get(Disk, uuid.UUID(job.params["disk_id"]))
                await _end_job(session, job.id, succeeded=False)
                if disk is None:
                    continue
                disk.status = DiskStatus.OK
                await self._stop_left_export(session, job)
                owner = await session.get(User, job.owner_id) if job.owner_id else None
                if job.params.get("direction") == Direction.UPLOAD.value and owner is not None:
                    await remove_disk_job(session, jobs, disk, owner)
                audit.record(session, f"{job.description} was interrupted by an engine restart",
                             code=audit.TRANSFER_IMAGE_FAILED, severity=LogSeverity.WARNING)
            return len(left)

    async def _stop_left_export(self, session: AsyncSession, job: Job) -> None:
        """A transfer served by a host: its export and ticket there end too (best effort:
        a host that is away has lost them anyway when its agent restarted)."""
        host_id = job.params.get("host_id")
        host = await session.get(Host, uuid.UUID(host_id)) if host_id else None
        if host is None or self.nodes is None or host.host_uuid is None:
            return
        try:
            await self.nodes.call(host, ImageExportStop(transfer_id=job.id), timeout_s=10)
        except Exception as exc:
            log.warning("could not close image transfer %s on host %s: %s", job.id,
                        host.name, exc)

    async def close_all(self) -> None:
        """At shutdown: no daemon or qemu-nbd outlives the engine (nor the hosts' exports
        of its transfers, when they can be reached)."""
        for transfer in self._transfers.values():
            if transfer.phase not in ENDED:
                try:
                    await self._close(transfer)
                except Exception as exc:
                    log.warning("could not close image transfer %s: %s", transfer.id, exc)
        self.daemon.stop()


async def _end_job(session: AsyncSession, job_id: uuid.UUID, *, succeeded: bool) -> None:
    job = await session.get(Job, job_id)
    if job is not None:
        job.state = "done" if succeeded else "failed"
        job.status = JobStatus.FINISHED if succeeded else JobStatus.FAILED
        job.end_time = utcnow()


async def _check_disk(session: AsyncSession, disk: Disk) -> None:
    if disk.status != DiskStatus.OK:
        raise Conflict(f"Cannot transfer disk {disk.name}: it is {disk.status}")
    running = (await session.execute(
        select(Vm.name).join(DiskAttachment, DiskAttachment.vm_id == Vm.id)
        .where(DiskAttachment.disk_id == disk.id, Vm.status != VmStatus.DOWN))).scalars().first()
    if running is not None:
        raise Conflict(f"Cannot transfer disk {disk.name}: VM {running} using it is not down")


def _extent(domain: StorageDomain, disk: Disk, box: SecretBox) -> IscsiExtentTarget | None:
    """An iSCSI volume's extent of its domain's LUN (None for other domains)."""
    if domain.storage_type != StorageType.ISCSI.value:
        return None
    extent = extent_of(disk.image_path)
    if extent is None:
        raise Conflict(f"Cannot transfer disk {disk.name}: it has no extent of its iSCSI domain")
    return IscsiExtentTarget(lun=lun_of(domain, box), offset=extent[0], size=extent[1])


def lun_url(lun: IscsiLunRef) -> str:
    return f"iscsi://{lun.portal}/{lun.target}/{lun.lun}"


def _file_size(source: str) -> int:
    if "://" in source:
        raise Conflict("A volume's own bytes (format cow) of an NFS domain are served by a "
                       "host of its data center, and none is up; download guest data with "
                       "format raw")
    return Path(source).stat().st_size


def _allocated(path: str) -> int:
    return Path(path).stat().st_blocks * 512
