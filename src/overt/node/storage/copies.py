"""Full copies of disk images (a template from a VM, a clone): `qemu-img convert` reads the
source's whole backing chain, so the copy is flattened and independent of it.

A source or target is a file of this node's storage or a volume on an NFS export (QEMU's
own NFS client, as everywhere else). The engine names a fresh target for every copy, so
a target found half-written (an earlier try cut short) is simply written again.
"""

from __future__ import annotations

import logging

from overt.node.storage import nfs_domain
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
from overt.protocol.storage import NfsVolumeTarget, SharedVolumeInfo, VolumeCopy
from overt.protocol.vm import DiskFormat, FileSource, NfsSource

log = logging.getLogger(__name__)


async def copy_volume(command: VolumeCopy, volumes: LocalVolumes) -> SharedVolumeInfo:
    source = _source(command.source, volumes)
    if isinstance(command.target, NfsVolumeTarget):
        return await _copy_to_nfs(command, source, command.target)
    target = volumes.inside(command.target.path, "the copy's target")
    await _blocking(lambda: target.parent.mkdir(parents=True, exist_ok=True, mode=0o755))
    await _convert(command, source, str(target))
    target.chmod(0o644)
    info = await volumes.info(target)
    log.info("disk image copied", extra={"volume": str(target)})
    return SharedVolumeInfo(format=info.format, virtual_size=info.virtual_size,
                            actual_size=info.actual_size)


def _source(source: FileSource | NfsSource, volumes: LocalVolumes) -> str:
    if isinstance(source, NfsSource):
        return nfs_domain.image_url(source.server, source.path)
    return str(volumes.existing(source.path, "the disk image to copy"))


async def _copy_to_nfs(command: VolumeCopy, source: str, target: NfsVolumeTarget
                       ) -> SharedVolumeInfo:
    relative = f"{target.domain_id}/images/{target.image_id}/{target.volume_id}"
    url = volume_url(target.storage, relative)
    if await _blocking(lambda: prepare_volume(target.storage, target.domain_id,
                                              target.image_id, relative)):
        return volume_info(await image_info(url))  # copied by an earlier try
    await _convert(command, source, url)
    facts = await image_info(url)
    await _blocking(lambda: finish_volume(target.storage, relative, {
        **target.metadata, "DOMAIN": str(target.domain_id), "IMAGE": str(target.image_id),
        "CAP": str(facts["virtual-size"]),
        "FORMAT": "COW" if command.format is DiskFormat.QCOW2 else "RAW",
        "TYPE": "SPARSE" if command.sparse else "PREALLOCATED", "LEGALITY": "LEGAL",
        "VOLTYPE": target.metadata.get("VOLTYPE", "LEAF"), "DISKTYPE": "DATA", "GEN": "0",
        "PUUID": TOP_OF_CHAIN}))
    log.info("volume copied", extra={"volume": relative})
    return volume_info(facts)


async def _convert(command: VolumeCopy, source: str, target: str) -> None:
    argv = ["qemu-img", "convert", "-q", "-O", command.format.value]
    if not command.sparse:
        argv += ["-S", "0"]
    await _qemu_img([*argv, source, target], f"copying {source} to {target}")
    if command.size_bytes > (volume_info(await image_info(target))).virtual_size:
        await _qemu_img(["qemu-img", "resize", "-q", "-f", command.format.value, target,
                         str(command.size_bytes)], f"growing the copy {target}")
