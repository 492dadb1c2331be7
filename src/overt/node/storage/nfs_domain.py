"""NFS storage domains in oVirt's on-storage layout, executed for the engine.

    SD_UUID/dom_md/{metadata,ids,leases,inbox,outbox,xleases}
    SD_UUID/images/IMG_UUID/VOL_UUID  (+ VOL_UUID.meta, VOL_UUID.lease)

Metadata files are written with libnfs (small files, directories); volumes are made
and read with qemu-img over nfs:// URLs, the same driver libvirt gives QEMU to run
them. The engine decides every id and size; this module only carries them out, so a
command repeated after a lost reply finds its work done and says so.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import uuid
from collections.abc import Callable
from typing import TypeVar

from overt.node.errors import NodeFailure
from overt.node.storage.libnfs import NfsError, NfsExport
from overt.node.storage.local import _qemu_img
from overt.protocol import ErrorCode
from overt.protocol.ovirt_metadata import parse_metadata, render_metadata
from overt.protocol.storage import (
    DomainContents,
    DomainInfo,
    DomainList,
    NfsExportRef,
    Removed,
    SharedVolumeCommit,
    SharedVolumeCreate,
    SharedVolumeDelete,
    SharedVolumeInfo,
    SharedVolumeMetaUpdate,
    StorageCommand,
    StorageDomainCreate,
    StorageDomainScan,
    StorageDomainUpdate,
    StoredVolume,
)
from overt.protocol.vm import DiskFormat

log = logging.getLogger(__name__)

T = TypeVar("T")
TOP_OF_CHAIN = "00000000-0000-0000-0000-000000000000"
DOM_MD_FILES = ("ids", "leases", "inbox", "outbox", "xleases")
_REFUSED = frozenset({errno.EACCES, errno.ENOENT, errno.EPERM})


def image_url(server: str, path: str) -> str:
    """QEMU's URL of an image on an NFS server (`path`: the export's, then the image's)."""
    return f"nfs://{server}{path}"


def volume_url(storage: NfsExportRef, relative: str) -> str:
    return image_url(storage.server, f"{storage.export.rstrip('/')}/{relative}")


class NfsDomains:
    """Runs the storage commands of one node."""

    async def execute(self, command: StorageCommand) -> DomainInfo | DomainList | \
            SharedVolumeInfo | Removed:
        match command:
            case StorageDomainCreate():
                return await _blocking(lambda: self._create(command))
            case StorageDomainUpdate():
                return await _blocking(lambda: self._update(command))
            case StorageDomainScan():
                return await self._scan(command)
            case SharedVolumeCreate():
                return await self._volume_create(command)
            case SharedVolumeCommit():
                return await self._volume_commit(command)
            case SharedVolumeDelete():
                return await _blocking(lambda: self._volume_delete(command))
            case SharedVolumeMetaUpdate():
                return await _blocking(lambda: self._volume_meta_update(command))
        raise NodeFailure(ErrorCode.BAD_REQUEST, f"unknown storage command {command.name}")

    # -- domains --------------------------------------------------------------------------

    def _create(self, command: StorageDomainCreate) -> DomainInfo:
        sd = str(command.domain_id)
        with _mounted(command.storage) as nfs:
            existing = self._read_metadata(nfs, sd)
            if existing is not None:
                if existing.get("SDUUID") != sd:
                    raise NodeFailure(ErrorCode.IMAGE_EXISTS, f"{sd}/dom_md/metadata on the "
                                      "export belongs to another domain")
                return self._info(nfs, sd, existing)
            if nfs.exists(f"/{sd}"):
                log.info("completing a half-made domain", extra={"storage_domain": sd})
            nfs.makedirs(f"/{sd}/dom_md")
            nfs.makedirs(f"/{sd}/images")
            for name in DOM_MD_FILES:
                if not nfs.exists(f"/{sd}/dom_md/{name}"):
                    nfs.write_bytes(f"/{sd}/dom_md/{name}", b"", mode=0o660)
            metadata = {**command.metadata, "SDUUID": sd}
            # The metadata file comes last: its presence means the domain is complete.
            nfs.write_bytes(f"/{sd}/dom_md/metadata",
                            render_metadata(metadata, checksum=True, eof=False))
            log.info("storage domain laid out", extra={"storage_domain": sd})
            return self._info(nfs, sd, metadata)

    def _update(self, command: StorageDomainUpdate) -> DomainInfo:
        sd = str(command.domain_id)
        with _mounted(command.storage) as nfs:
            existing = self._read_metadata(nfs, sd)
            if existing is None:
                raise NodeFailure(ErrorCode.IMAGE_MISSING,
                                  f"storage domain {sd} is not on {_where(command.storage)}")
            metadata = {**existing, **command.changes}
            nfs.write_bytes(f"/{sd}/dom_md/metadata",
                            render_metadata(metadata, checksum=True, eof=False))
            return self._info(nfs, sd, metadata)

    async def _scan(self, command: StorageDomainScan) -> DomainList:
        found = await _blocking(lambda: self._scan_files(command.storage))
        domains = []
        for info, volumes in found:
            stored = []
            for image_id, volume_id, meta in volumes:
                relative = f"{info.id}/images/{image_id}/{volume_id}"
                facts = await image_info(volume_url(command.storage, relative))
                volume = volume_info(facts)
                stored.append(StoredVolume(
                    image_id=image_id, volume_id=volume_id, metadata=meta, format=volume.format,
                    virtual_size=volume.virtual_size, actual_size=volume.actual_size))
            domains.append(DomainContents(domain=info, volumes=stored))
        return DomainList(domains=domains)

    def _scan_files(self, storage: NfsExportRef
                    ) -> list[tuple[DomainInfo, list[tuple[uuid.UUID, uuid.UUID, dict[str, str]]]]]:
        result = []
        with _mounted(storage) as nfs:
            for name in nfs.listdir("/"):
                if _uuid(name) is None:
                    continue
                metadata = self._read_metadata(nfs, name)
                if metadata is None or metadata.get("SDUUID") != name:
                    continue
                volumes = []
                images = f"/{name}/images"
                for image in nfs.listdir(images) if nfs.is_dir(images) else []:
                    image_id = _uuid(image)
                    if image_id is None:
                        continue
                    for entry in nfs.listdir(f"{images}/{image}"):
                        volume_id = _uuid(entry.removesuffix(".meta"))
                        if not entry.endswith(".meta") or volume_id is None:
                            continue
                        meta = parse_metadata(
                            nfs.read_bytes(f"{images}/{image}/{entry}").decode(errors="replace"))
                        if nfs.exists(f"{images}/{image}/{volume_id}"):
                            volumes.append((image_id, volume_id, meta))
                result.append((self._info(nfs, name, metadata), volumes))
        return result

    @staticmethod
    def _read_metadata(nfs: NfsExport, sd: str) -> dict[str, str] | None:
        path = f"/{sd}/dom_md/metadata"
        if not nfs.exists(path):
            return None
        return parse_metadata(nfs.read_bytes(path).decode(errors="replace"))

    @staticmethod
    def _info(nfs: NfsExport, sd: str, metadata: dict[str, str]) -> DomainInfo:
        capacity = nfs.capacity("/")
        return DomainInfo(id=uuid.UUID(sd), metadata=metadata, total_bytes=capacity.total,
                          free_bytes=capacity.free)

    # -- volumes --------------------------------------------------------------------------

    async def _volume_create(self, command: SharedVolumeCreate) -> SharedVolumeInfo:
        relative = f"{command.domain_id}/images/{command.image_id}/{command.volume_id}"
        url = volume_url(command.storage, relative)

        if await _blocking(lambda: prepare_volume(  # made by an earlier try whose reply was lost
                command.storage, command.domain_id, command.image_id, relative)):
            return volume_info(await image_info(url))
        argv = ["qemu-img", "create", "-q", "-f", command.format.value]
        parent = TOP_OF_CHAIN
        if command.backing_image_id is not None and command.backing_volume_id is not None:
            if command.format is not DiskFormat.QCOW2:
                raise NodeFailure(ErrorCode.BAD_REQUEST, "only a qcow2 volume has a backing")
            parent = str(command.backing_volume_id)
            # The backing is named by its whole URL: QEMU's NFS driver resolves a relative
            # name (oVirt's `../IMG/VOL`) under the image's own path, not its directory.
            backing = f"{command.domain_id}/images/{command.backing_image_id}/{parent}"
            argv += ["-b", volume_url(command.storage, backing),
                     "-F", command.backing_format.value]
        if command.format is DiskFormat.QCOW2 and not command.sparse:
            argv += ["-o", "preallocation=metadata"]
        await _qemu_img([*argv, url, str(command.size_bytes)], f"creating volume {relative}")
        facts = await image_info(url)
        await _blocking(lambda: finish_volume(command.storage, relative, {
            **command.metadata, "DOMAIN": str(command.domain_id),
            "IMAGE": str(command.image_id), "CAP": str(facts["virtual-size"]),
            "FORMAT": "COW" if command.format is DiskFormat.QCOW2 else "RAW",
            "TYPE": "SPARSE" if command.sparse else "PREALLOCATED",
            "LEGALITY": "LEGAL", "VOLTYPE": "LEAF", "DISKTYPE": "DATA", "GEN": "0",
            "PUUID": parent}))
        if command.backing_image_id == command.image_id and command.backing_volume_id:
            # A snapshot: the volume under the new one is no longer the image's leaf.
            under = f"{command.domain_id}/images/{command.image_id}/{parent}"
            await _blocking(lambda: update_meta(command.storage, under, {"VOLTYPE": "INTERNAL"}))
        log.info("volume created", extra={"volume": relative})
        return volume_info(facts)

    async def _volume_commit(self, command: SharedVolumeCommit) -> SharedVolumeInfo:
        image = f"{command.domain_id}/images/{command.image_id}"
        top, base = f"{image}/{command.top_id}", f"{image}/{command.base_id}"
        top_url, base_url = volume_url(command.storage, top), volume_url(command.storage, base)
        facts = await image_info(top_url)
        backing = str(facts.get("full-backing-filename") or facts.get("backing-filename") or "")
        if backing.rstrip("/").rsplit("/", 1)[-1] != str(command.base_id):
            raise NodeFailure(ErrorCode.BAD_REQUEST, f"{base} is not the backing volume of "
                              f"{top} (it is {backing or 'none'})")
        await _qemu_img(["qemu-img", "commit", "-q", "-d", _commit_spec(
            top_url, command.base_format)], f"merging volume {top} into {base}")
        if command.child_id is not None:
            child = f"{image}/{command.child_id}"
            await _qemu_img(["qemu-img", "rebase", "-q", "-u", "-f", "qcow2", "-b", base_url,
                             "-F", command.base_format.value, volume_url(command.storage, child)],
                            f"rebasing volume {child} onto {base}")
            await _blocking(lambda: update_meta(command.storage, child,
                                                {"PUUID": str(command.base_id)}))
        else:
            await _blocking(lambda: update_meta(command.storage, base, {"VOLTYPE": "LEAF"}))
        log.info("volume merged", extra={"volume": top, "base": base})
        return volume_info(await image_info(base_url))

    def _volume_meta_update(self, command: SharedVolumeMetaUpdate) -> Removed:
        relative = f"{command.domain_id}/images/{command.image_id}/{command.volume_id}"
        update_meta(command.storage, relative, command.changes)
        log.info("volume metadata updated", extra={"volume": relative})
        return Removed()

    def _volume_delete(self, command: SharedVolumeDelete) -> Removed:
        image_dir = f"/{command.domain_id}/images/{command.image_id}"
        with _mounted(command.storage) as nfs:
            # The .meta goes first, so a half-removed volume is no longer a disk.
            for suffix in (".meta", ".lease", ""):
                nfs.unlink(f"{image_dir}/{command.volume_id}{suffix}", missing_ok=True)
            if nfs.is_dir(image_dir) and not nfs.listdir(image_dir):
                nfs.rmdir(image_dir, missing_ok=True)
        log.info("volume removed", extra={"volume": f"{image_dir}/{command.volume_id}"})
        return Removed()


def prepare_volume(storage: NfsExportRef, domain_id: uuid.UUID, image_id: uuid.UUID,
                   relative: str) -> bool:
    """Make a volume's image directory; whether the volume is already complete (its .meta)."""
    with _mounted(storage) as nfs:
        if NfsDomains._read_metadata(nfs, str(domain_id)) is None:
            raise NodeFailure(ErrorCode.IMAGE_MISSING,
                              f"storage domain {domain_id} is not on {_where(storage)}")
        nfs.makedirs(f"/{domain_id}/images/{image_id}")
        return nfs.exists(f"/{relative}.meta")


def finish_volume(storage: NfsExportRef, relative: str, meta: dict[str, str]) -> None:
    """A volume's lease and `.meta`, the .meta last: a volume without one is a leftover."""
    with _mounted(storage) as nfs:
        nfs.write_bytes(f"/{relative}.lease", b"", mode=0o660)
        nfs.write_bytes(f"/{relative}.meta", render_metadata(meta, checksum=False, eof=True))


def _commit_spec(top_url: str, base_format: DiskFormat) -> str:
    """`top` as a json: image whose backing opens read-write from the start: QEMU's NFS
    driver cannot reopen a read-only image read-write, as `qemu-img commit` would."""
    if top_url.startswith("nfs://"):
        server, _, path = top_url.removeprefix("nfs://").partition("/")
        file: dict[str, object] = {"driver": "nfs", "server": {"type": "inet", "host": server},
                                   "path": f"/{path}"}
    else:  # an export kept as a local directory (the fast lane)
        file = {"driver": "file", "filename": top_url}
    return "json:" + json.dumps({"driver": "qcow2", "file": file, "backing": {
        "driver": base_format.value, "read-only": False}}, separators=(",", ":"))


def update_meta(storage: NfsExportRef, relative: str, changes: dict[str, str]) -> None:
    """Change keys of a volume's `.meta` (one without a .meta is left alone)."""
    with _mounted(storage) as nfs:
        path = f"/{relative}.meta"
        if not nfs.exists(path):
            return
        meta = parse_metadata(nfs.read_bytes(path).decode(errors="replace"))
        nfs.write_bytes(path, render_metadata({**meta, **changes}, checksum=False, eof=True))


class _Mounted:
    def __init__(self, storage: NfsExportRef) -> None:
        self.storage = storage
        self.nfs: NfsExport | None = None

    def __enter__(self) -> NfsExport:
        try:
            self.nfs = NfsExport(self.storage.server, self.storage.export)
        except NfsError as exc:
            if exc.errno in _REFUSED:  # the server answered: no such export for us
                raise NodeFailure(ErrorCode.BAD_REQUEST, f"the NFS server {self.storage.server} "
                                  f"does not let this host mount {self.storage.export}: "
                                  f"{exc.strerror}") from None
            raise NodeFailure(ErrorCode.STORAGE_UNREACHABLE,
                              f"cannot reach {_where(self.storage)}: {exc.strerror}") from None
        return self.nfs

    def __exit__(self, exc_type: object, exc: object, _tb: object) -> None:
        if self.nfs is not None:
            self.nfs.close()
        if isinstance(exc, NfsError):
            raise NodeFailure(ErrorCode.HYPERVISOR_ERROR,
                              f"on {_where(self.storage)}: {exc}") from None


def _mounted(storage: NfsExportRef) -> _Mounted:
    return _Mounted(storage)


def _where(storage: NfsExportRef) -> str:
    return f"{storage.server}:{storage.export}"


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


async def _blocking(work: Callable[[], T]) -> T:
    return await asyncio.to_thread(work)


async def image_info(url: str) -> dict[str, object]:
    out = await _qemu_img(["qemu-img", "info", "-U", "--output=json", url], f"reading {url}")
    facts: dict[str, object] = json.loads(out)
    return facts


def volume_info(facts: dict[str, object]) -> SharedVolumeInfo:
    return SharedVolumeInfo(format=DiskFormat(str(facts["format"])),
                            virtual_size=int(str(facts["virtual-size"])),
                            actual_size=int(str(facts.get("actual-size", 0))))
