"""Full copies of disk images (a template from a VM, a clone): `qemu-img convert` reads the
source's whole backing chain, so the copy is flattened and independent of it.

A source or target is a file of this node's storage or a volume on an NFS export (QEMU's
own NFS client, as everywhere else). The engine names a fresh target for every copy, so
a target found half-written (an earlier try cut short) is simply written again.
"""

from __future__ import annotations

import logging

from overt.node.errors import NodeFailure
from overt.node.storage import iscsi_domain, nfs_domain
from overt.node.storage.local import LocalVolumes, _qemu_img
from overt.node.storage.nfs_domain import (
    TOP_OF_CHAIN,
    _blocking,
    finish_volume,
    image_info,
    prepare_volume,
    volume_info,
    volume_url,
)
from overt.protocol import ErrorCode
from overt.protocol.storage import (
    ExtentFormat,
    IscsiExtentTarget,
    IscsiLunRef,
    NfsVolumeTarget,
    SharedVolumeInfo,
    VolumeCopy,
)
from overt.protocol.vm import DiskFormat, FileSource, IscsiSource, NfsSource

log = logging.getLogger(__name__)


async def copy_volume(command: VolumeCopy, volumes: LocalVolumes) -> SharedVolumeInfo:
    source = _source(command.source, volumes)
    if isinstance(command.target, NfsVolumeTarget):
        return await _copy_to_nfs(command, source, command.target)
    if isinstance(command.target, IscsiExtentTarget):
        return await _copy_to_extent(command, source, command.target)
    target = volumes.inside(command.target.path, "the copy's target")
    await _blocking(lambda: target.parent.mkdir(parents=True, exist_ok=True, mode=0o755))
    under = None
    if command.backing is not None:
        if command.backing.path is None:
            raise NodeFailure(ErrorCode.BAD_REQUEST, "a file's copy goes over a file")
        under = str(volumes.existing(command.backing.path, "the copy's backing volume"))
    await _convert(command, source, str(target), *_over(under))
    target.chmod(0o644)
    info = await volumes.info(target)
    log.info("disk image copied", extra={"volume": str(target)})
    return SharedVolumeInfo(format=info.format, virtual_size=info.virtual_size,
                            actual_size=info.actual_size)


def _source(source: FileSource | NfsSource | IscsiSource, volumes: LocalVolumes) -> str:
    if isinstance(source, NfsSource):
        return nfs_domain.image_url(source.server, source.path)
    if isinstance(source, IscsiSource):
        if source.offset is None or source.size is None:
            raise NodeFailure(ErrorCode.BAD_REQUEST, "a copy reads a volume of an iSCSI "
                              "domain (an extent), not a whole LUN")
        lun = IscsiLunRef(portal=source.portal, target=source.target, lun=source.lun,
                          chap=source.chap)
        # No driver on top: qemu-img finds the format inside the extent (qcow2 or raw).
        window = iscsi_domain.image_json(iscsi_domain.window(lun, source.offset, source.size))
        return 'json:{"file":' + window.removeprefix("json:") + "}"
    return str(volumes.existing(source.path, "the disk image to copy"))


def _luns(command: VolumeCopy) -> list[IscsiLunRef | IscsiSource]:
    """The LUNs a copy opens (their CHAP secrets go with the qemu-img line)."""
    found: list[IscsiLunRef | IscsiSource] = []
    if isinstance(command.source, IscsiSource):
        found.append(command.source)
    if isinstance(command.target, IscsiExtentTarget):
        found.append(command.target.lun)
    return found


def _said(source: str) -> str:
    """A source for a message: a LUN's JSON options said as 'a volume of an iSCSI LUN'."""
    return "a volume of an iSCSI LUN" if source.startswith("json:") else source


async def _copy_to_nfs(command: VolumeCopy, source: str, target: NfsVolumeTarget
                       ) -> SharedVolumeInfo:
    relative = f"{target.domain_id}/images/{target.image_id}/{target.volume_id}"
    url = volume_url(target.storage, relative)
    if await _blocking(lambda: prepare_volume(target.storage, target.domain_id,
                                              target.image_id, relative)):
        return volume_info(await image_info(url))  # copied by an earlier try
    under, parent = None, TOP_OF_CHAIN
    if command.backing is not None:
        if command.backing.volume_id is None:
            raise NodeFailure(ErrorCode.BAD_REQUEST, "an NFS volume's copy goes over a "
                              "volume of its image")
        parent = str(command.backing.volume_id)
        # Named by its whole URL, as a snapshot's volume names its parent.
        under = volume_url(target.storage,
                           f"{target.domain_id}/images/{target.image_id}/{parent}")
    await _convert(command, source, url, *_over(under))
    facts = await image_info(url)
    await _blocking(lambda: finish_volume(target.storage, relative, {
        **target.metadata, "DOMAIN": str(target.domain_id), "IMAGE": str(target.image_id),
        "CAP": str(facts["virtual-size"]),
        "FORMAT": "COW" if command.format is DiskFormat.QCOW2 else "RAW",
        "TYPE": "SPARSE" if command.sparse else "PREALLOCATED", "LEGALITY": "LEGAL",
        "VOLTYPE": target.metadata.get("VOLTYPE", "LEAF"),
        "DISKTYPE": target.metadata.get("DISKTYPE", "DATA"), "GEN": "0",
        "PUUID": parent}))
    log.info("volume copied", extra={"volume": relative})
    return volume_info(facts)


async def _copy_to_extent(command: VolumeCopy, source: str, target: IscsiExtentTarget
                          ) -> SharedVolumeInfo:
    """Lay the volume out on its extent (a qcow2 header of the full size), then write the
    source into it: an extent is never created by qemu-img, only written (`-n`)."""
    under = command.backing.extent if command.backing is not None else None
    if command.backing is not None and under is None:
        raise NodeFailure(ErrorCode.BAD_REQUEST, "an extent's copy goes over an extent")
    await iscsi_domain.execute(ExtentFormat(
        lun=target.lun, offset=target.offset, size=target.size, format=command.format,
        virtual_size=command.size_bytes, backing=under))
    into = iscsi_domain.image_json(iscsi_domain.window(target.lun, target.offset, target.size,
                                                       command.format))
    argv = ["qemu-img", "convert", "-q", "-n", "-O", command.format.value]
    if under is not None:  # the header names it already; -B: write this layer's own data
        argv += ["-B", iscsi_domain.image_json(iscsi_domain.window(
            target.lun, under.offset, under.size, under.format)), "-F", under.format.value]
    if not command.sparse:
        argv += ["-S", "0"]
    await iscsi_domain.run_qemu_img([*argv, source, into], f"copying {_said(source)} to an "
                                     f"extent at {target.offset}", _luns(command))
    log.info("volume copied", extra={"volume": f"extent {target.offset}"})
    virtual = command.size_bytes if command.format is DiskFormat.QCOW2 else target.size
    return SharedVolumeInfo(format=command.format, virtual_size=virtual,
                            actual_size=target.size)


def _over(backing: str | None) -> tuple[str, ...]:
    """`_convert`'s backing argument, given only for a layer."""
    return () if backing is None else (backing,)


async def _convert(command: VolumeCopy, source: str, target: str,
                   backing: str | None = None) -> None:
    """`source` into a new image `target`; over `backing` (a layer: only the source's own
    volume's data is written)."""
    argv = ["qemu-img", "convert", "-q", "-O", command.format.value]
    if backing is not None and command.backing is not None:
        argv += ["-B", backing, "-F", command.backing.format.value]
    if not command.sparse:
        argv += ["-S", "0"]
    await iscsi_domain.run_qemu_img([*argv, source, target],
                                     f"copying {_said(source)} to {target}", _luns(command))
    if command.size_bytes > (volume_info(await image_info(target))).virtual_size:
        await _qemu_img(["qemu-img", "resize", "-q", "-f", command.format.value, target,
                         str(command.size_bytes)], f"growing the copy {target}")
