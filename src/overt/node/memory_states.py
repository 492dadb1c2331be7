"""Memory snapshots on the node: the guest's state is written to this node's storage
(libvirt can write it only to a file it opens), then copied to raw volumes of a shared
domain through QEMU's block layer (`qemu-img convert` to an nfs:// URL or an iSCSI
extent, as every shared volume), so any host of the data center can resume the guest;
the reverse before a resume. Nodes have no kernel mounts, and libvirt's save and
snapshot APIs take a file, not an NBD or network target: staging a local copy is the
path they allow.

Staged files live under the storage directory's `.memory/`, named by the volume they go
to or come from, so a retried command finds what an earlier attempt left. Once the disks
are switched the snapshot stands: a state that cannot be stored (after a few tries) is
dropped and the snapshot is recorded without memory. An engine that gives a snapshot up
for good (its job failed before the switch) has staged files deleted (`drop`).
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
    # From here the disks write their new volumes: the snapshot stands whatever becomes of
    # its memory, so a state that cannot be stored makes it a disk-only snapshot (the
    # engine records it so and says why), never a failure the engine would undo.
    problem = ""
    for path, target in ((memory, command.memory), (metadata, command.metadata)):
        problem = await _store(command.vm_id, path, target, volumes)
        if problem:
            break
    for path in (memory, metadata):
        await asyncio.to_thread(path.unlink, missing_ok=True)
    if problem:
        log.warning("memory snapshot taken without its memory: %s", problem,
                    extra={"vm_id": str(command.vm_id)})
        return saved.model_copy(update={"stored": False, "problem": problem})
    log.info("memory snapshot stored", extra={"vm_id": str(command.vm_id),
                                               "memory_bytes": saved.memory_bytes})
    return saved


STORE_RETRY_S = (2.0, 5.0, 10.0)  # waits between tries: a storage blip is ridden out


async def _store(vm_id: uuid.UUID, path: Path, target: NfsVolumeTarget | IscsiExtentTarget,
                 volumes: LocalVolumes) -> str:
    """Copy a staged file to its volume, trying again after a while; what went wrong in
    the end ("" when it is stored)."""
    if not await asyncio.to_thread(path.is_file):
        return (f"the saved state {path.name} of VM {vm_id} is gone (an earlier attempt took "
                "the snapshot and its node restarted)")
    copy = VolumeCopy(source=FileSource(path=str(path)), target=target,
                      format=DiskFormat.RAW,
                      size_bytes=max((await asyncio.to_thread(path.stat)).st_size, 1,
                                     target.size_bytes if isinstance(target, NfsVolumeTarget)
                                     else 0),
                      sparse=True)
    for wait in STORE_RETRY_S:
        try:
            await copies.copy_volume(copy, volumes)
            return ""
        except NodeFailure as exc:
            log.info("storing a memory snapshot's state failed (%s); trying again in %g s",
                     exc.message, wait, extra={"vm_id": str(vm_id)})
            await asyncio.sleep(wait)
    try:  # the last try
        await copies.copy_volume(copy, volumes)
    except NodeFailure as exc:
        return f"its memory could not be stored on its volume: {exc.message}"
    return ""


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
