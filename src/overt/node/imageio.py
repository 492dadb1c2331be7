"""The node's image data server: ovirt-imageio on this host, as oVirt runs it on each.

The engine sends a transfer's export (a volume this node reaches: a file of its storage
directory or an NFS volume) and its tickets; clients then move the data straight to
this host (`transfer_url`), or through the engine's daemon (`proxy_url`). The daemon
serves TLS with this node's own key under a certificate the engine's server CA issued
for the host's address, so the SDK's clients trust it with the engine CA file alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import uuid
from pathlib import Path
from typing import ClassVar

from cryptography import x509

from overt.imageio.daemon import DaemonFiles, ImageioDaemon
from overt.imageio.exports import NbdExport
from overt.node.errors import NodeFailure
from overt.node.storage import chap, iscsi_domain
from overt.node.storage.iscsi_domain import image_json
from overt.node.storage.local import LocalVolumes, _qemu_img
from overt.pki.certs import load_cert
from overt.protocol import ErrorCode
from overt.protocol.imageio import (
    ImageExport,
    ImageExportStart,
    ImageExportStop,
    ImageTicket,
    ImageTicketState,
)
from overt.protocol.storage import IscsiExtentTarget
from overt.protocol.vm import DiskFormat

log = logging.getLogger(__name__)

DEFAULT_PORT = 54322  # oVirt's: ovirt-imageio on each host
KEEP_CERT_FOR = dt.timedelta(days=1)  # a certificate closer to its end is replaced


class ImageioUnavailable(NodeFailure):
    """The daemon or a volume's export failed (worth retrying)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.STORAGE_UNREACHABLE, message)


class _NodeDaemon(ImageioDaemon):
    fail: ClassVar[type[Exception]] = ImageioUnavailable


class _NodeExport(NbdExport):
    fail: ClassVar[type[Exception]] = ImageioUnavailable


class NodeImageio:
    """This node's transfers: one qemu-nbd export each, their tickets in one daemon."""

    def __init__(self, home: Path, key_file: Path, volumes: LocalVolumes, *,
                 address: str = "0.0.0.0", port: int = DEFAULT_PORT) -> None:  # noqa: S104
        self.home = home
        self.volumes = volumes
        self.daemon = _NodeDaemon(DaemonFiles(home, cert_file=home / "imageio.pem",
                                              key_file=key_file, ca_file=home / "ca.pem"),
                                  address=address, port=port)
        self._exports: dict[uuid.UUID, NbdExport] = {}
        self._sizes: dict[uuid.UUID, int | None] = {}  # each export's own bytes, if asked
        self._tickets: dict[uuid.UUID, set[str]] = {}  # each export's tickets

    async def execute(self, command: ImageExportStart | ImageExportStop | ImageTicket
                      ) -> ImageExport | ImageTicketState:
        match command:
            case ImageExportStart():
                return await self.start(command)
            case ImageExportStop(transfer_id=transfer_id):
                await self.stop(transfer_id)
                return ImageTicketState()
            case ImageTicket():
                return await self.ticket(command)

    async def start(self, command: ImageExportStart) -> ImageExport:
        await self._ensure_daemon(command.certificate_pem, command.ca_pem)
        if command.transfer_id in self._exports:
            return ImageExport(port=self.daemon.port, size=self._sizes.get(command.transfer_id))
        source, size = command.source, None
        if command.extent is not None:
            extent = command.extent
            source = image_json(iscsi_domain.window(extent.lun, extent.offset, extent.size,
                                                    DiskFormat(command.format)))
        elif "://" not in source:
            source = str(self.volumes.inside(source, "the volume to transfer"))
        elif not source.startswith("nfs://"):
            raise NodeFailure(ErrorCode.BAD_REQUEST, "a transfer's volume is a file or an "
                              "nfs:// URL")
        lun = command.extent.lun if command.extent is not None else None
        # The secret's file lives until qemu-nbd has read it (it has once its socket is up).
        with chap.secret_objects([(lun.target, lun.chap)] if lun else []) as objects:
            if command.own_bytes:
                if command.format != "raw":
                    raise NodeFailure(ErrorCode.BAD_REQUEST,
                                      "a volume's own bytes are served raw")
                source, size = await own_bytes(source, command.extent, objects)
            sockets = self.home / "nbd"
            sockets.mkdir(mode=0o700, parents=True, exist_ok=True)
            export = _NodeExport(source, command.format,
                                 sockets / f"{command.transfer_id}.sock",
                                 read_only=command.read_only, objects=objects)
            await export.start()
        self._exports[command.transfer_id] = export
        self._sizes[command.transfer_id] = size
        log.info("exporting a volume for image transfer %s", command.transfer_id)
        return ImageExport(port=self.daemon.port, size=size)

    async def stop(self, transfer_id: uuid.UUID) -> None:
        for ticket_id in self._tickets.pop(transfer_id, set()):
            if self.daemon.running:
                await self.daemon.remove_ticket(ticket_id)
        export = self._exports.pop(transfer_id, None)
        self._sizes.pop(transfer_id, None)
        if export is not None:
            await export.stop()
            log.info("image transfer %s closed", transfer_id)

    async def ticket(self, command: ImageTicket) -> ImageTicketState:
        export = self._exports.get(command.transfer_id)
        if command.action == "add":
            if export is None:
                raise NodeFailure(ErrorCode.INVALID_STATE, f"image transfer "
                                  f"{command.transfer_id} has no export on this host")
            await self.daemon.add_ticket({
                "uuid": command.ticket_id, "size": command.size, "url": export.url,
                "timeout": command.timeout_s, "inactivity_timeout": command.inactivity_timeout_s,
                "ops": list(command.ops), "sparse": True,
                "transfer_id": str(command.transfer_id)})
            self._tickets.setdefault(command.transfer_id, set()).add(command.ticket_id)
            return ImageTicketState()
        if not self.daemon.running:
            return ImageTicketState()
        if command.action == "extend":
            await self.daemon.extend_ticket(command.ticket_id, command.timeout_s)
            return ImageTicketState()
        if command.action == "remove":
            await self.daemon.remove_ticket(command.ticket_id)
            self._tickets.get(command.transfer_id, set()).discard(command.ticket_id)
            return ImageTicketState()
        info = await self.daemon.ticket_info(command.ticket_id)
        if info is not None and info.get("transfer_id") != str(command.transfer_id):
            return ImageTicketState()  # another transfer's ticket: not this one's business
        return ImageTicketState(info=info)

    async def _ensure_daemon(self, certificate_pem: str, ca_pem: str) -> None:
        """Start the daemon with the engine's certificate for this host; a running daemon
        keeps its certificate (restarting would cut other transfers) until near its end."""
        files = self.daemon.files
        if self.daemon.running and not _ending(files.cert_file):
            return
        try:
            load_cert(certificate_pem.encode())
        except ValueError:
            raise NodeFailure(ErrorCode.BAD_REQUEST, "the transfer's certificate is not "
                              "a PEM certificate") from None
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        files.cert_file.write_text(certificate_pem)
        files.ca_file.write_text(ca_pem)
        if self.daemon.running:
            self.daemon.stop()
        await self.daemon.ensure_started()

    async def close(self) -> None:
        """At the agent's stop: no export or daemon outlives it."""
        for transfer_id in list(self._exports):
            with contextlib.suppress(Exception):
                await self.stop(transfer_id)
        self.daemon.stop()


async def own_bytes(source: str, extent: IscsiExtentTarget | None,
                    objects: list[str] | None = None) -> tuple[str, int]:
    """What serves a qcow2 volume's own bytes raw, and how many there are: a file's or an
    NFS volume's length; of an iSCSI extent, the part up to the qcow2's end (qemu-img
    check's `image-end-offset`), since the rest of the extent is not the volume's and may
    hold what an earlier volume left there."""
    if extent is not None:
        qcow2 = image_json(iscsi_domain.window(extent.lun, extent.offset, extent.size,
                                               DiskFormat.QCOW2))
        end = await _qcow2_end(qcow2, objects or [])
        if not 0 < end <= extent.size:
            raise NodeFailure(ErrorCode.IMAGE_MISSING, "the extent holds no qcow2 volume")
        return image_json(iscsi_domain.window(extent.lun, extent.offset, end)), end
    if "://" not in source:
        return source, await asyncio.to_thread(os.path.getsize, source)
    info = await _qemu_img(["qemu-img", "info", "-U", "--output=json", "-f", "raw", source],
                           "reading the volume's size")
    return source, int(json.loads(info)["virtual-size"])


async def _qcow2_end(image: str, objects: list[str]) -> int:
    """qemu-img check's end of a qcow2 image; leaked clusters (exit status 3) are fine."""
    proc = await asyncio.create_subprocess_exec(
        "qemu-img", "check", *objects, "-U", "--output=json", image,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 300)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ImageioUnavailable("reading the volume's qcow2 end took too long") from None
    if proc.returncode not in (0, 3):
        detail = err.decode(errors="replace").strip().splitlines()
        raise NodeFailure(ErrorCode.IMAGE_MISSING, "the extent holds no sound qcow2 volume: "
                          + (detail[-1] if detail else f"exit status {proc.returncode}"))
    return int(json.loads(out).get("image-end-offset", 0))


def _ending(cert_file: Path) -> bool:
    try:
        cert: x509.Certificate = load_cert(cert_file.read_bytes())
    except (OSError, ValueError):
        return True
    return cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < KEEP_CERT_FOR
