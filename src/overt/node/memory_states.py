"""Memory snapshots on the node: the guest's state is written to this node's storage
(libvirt can write it only to a file it opens), then copied to raw volumes of a shared
domain through QEMU's block layer (`qemu-img convert` to an nfs:// URL or an iSCSI
extent, as every shared volume), so any host of the data center can resume the guest;
the reverse before a resume. Nodes have no kernel mounts, and libvirt's save and
snapshot APIs take a file, not an NBD or network target: staging a local copy is the
path they allow.

Staged files live under the storage directory's `.memory/`, named by the volume they go
to or come from, so a retried command finds what an earlier attempt left; an engine that
gives the snapshot up for good (its job failed) has them deleted (`drop`), so a state the
copy never stored does not stay on the node.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

from overt.node.errors import NodeFailure
from overt.node.hypervisor.base import Hypervisor
from overt.node.storage import copies
from overt.node.storage.local import LocalVolumes
from overt.protocol import ErrorCode
from overt.protocol.commands import MemorySaved, VmMemorySnapshot, VmMemoryStagingDrop
from overt.protocol.storage import IscsiExtentTarget, NfsVolumeTarget, VolumeCopy
from overt.protocol.vm import DiskFormat, FileSource, IscsiSource, NfsSource

log = logging.getLogger(__name__)
STAGING = ".memory"


def staged(volumes: LocalVolumes, name: str) -> Path:
    return volumes.storage_dir / STAGING / name


def _target_name(target: NfsVolumeTarget | IscsiExtentTarget) -> str:
    if isinstance(target, NfsVolumeTarget):
        return f"{target.volume_id}.state"
    return f"extent-{target.offset}-{target.size}.state"


async def take(command: VmMemorySnapshot, hypervisor: Hypervisor,
               volumes: LocalVolumes) -> MemorySaved:
    """Snapshot the disks with the guest's state, then put the state and the domain's XML
    on their volumes and drop the staged copies."""
    memory = staged(volumes, _target_name(command.memory))
    metadata = staged(volumes, _target_name(command.metadata))
    saved = await hypervisor.memory_snapshot(command.vm_id, command.disks, memory, metadata)
    for path, target in ((memory, command.memory), (metadata, command.metadata)):
        if not await asyncio.to_thread(path.is_file):
            raise NodeFailure(ErrorCode.IMAGE_MISSING, f"the saved state {path} of VM "
                              f"{command.vm_id} is gone (the snapshot was taken by an earlier "
                              "attempt); its memory cannot be stored")
        size = (await asyncio.to_thread(path.stat)).st_size
        try:
            await copies.copy_volume(VolumeCopy(
                source=FileSource(path=str(path)), target=target, format=DiskFormat.RAW,
                size_bytes=max(size, 1), sparse=True), volumes)
        except NodeFailure as exc:
            # The disks were switched already: the engine must not undo them but ask
            # again, and the next attempt copies the state kept here.
            raise NodeFailure(ErrorCode.STORAGE_UNREACHABLE, "the snapshot was taken but its "
                              f"memory could not be stored yet: {exc.message}") from exc
    for path in (memory, metadata):
        await asyncio.to_thread(path.unlink, missing_ok=True)
    log.info("memory snapshot stored", extra={"vm_id": str(command.vm_id),
                                               "memory_bytes": saved.memory_bytes})
    return saved


async def drop(command: VmMemoryStagingDrop, volumes: LocalVolumes) -> list[Path]:
    """Delete the staged state and XML of a memory snapshot given up; the ones deleted."""
    gone = []
    for target in (command.memory, command.metadata):
        path = staged(volumes, _target_name(target))
        if await asyncio.to_thread(path.is_file):
            await asyncio.to_thread(path.unlink, missing_ok=True)
            gone.append(path)
    if gone:
        log.info("staged memory snapshot dropped", extra={
            "vm_id": str(command.vm_id), "files": [p.name for p in gone]})
    return gone


async def fetch(vm_id: uuid.UUID, source: NfsSource | IscsiSource,
                volumes: LocalVolumes) -> Path:
    """A local copy of a memory snapshot's state, for libvirt to resume from (it deletes
    the copy once the guest runs)."""
    path = staged(volumes, f"{vm_id}.resume")
    await asyncio.to_thread(lambda: path.parent.mkdir(parents=True, exist_ok=True,
                                                      mode=0o700))
    await asyncio.to_thread(path.unlink, missing_ok=True)
    await copies.copy_volume(VolumeCopy(source=source, target=FileSource(path=str(path)),
                                        format=DiskFormat.RAW, size_bytes=1, sparse=True),
                             volumes)
    return path
