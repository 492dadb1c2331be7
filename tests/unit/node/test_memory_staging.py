"""The node's staged copies of a memory snapshot (`overt.node.memory_states`): what
`vm.memory_snapshot` keeps for a retry when the copy to the volumes fails, and what
`vm.memory_staging_drop` deletes once the engine has given the snapshot up (the other
files of the staging directory, another snapshot's or a resume's, stay)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from overt.node import memory_states
from overt.node.errors import NodeFailure
from overt.node.storage.local import LocalVolumes
from overt.protocol import ErrorCode
from overt.protocol.commands import (
    DiskOverlay,
    MemorySaved,
    VmMemorySnapshot,
    VmMemoryStagingDrop,
)
from overt.protocol.storage import IscsiExtentTarget, IscsiLunRef, NfsExportRef, NfsVolumeTarget

MIB = 1 << 20


def _nfs(volume_id: uuid.UUID) -> NfsVolumeTarget:
    return NfsVolumeTarget(storage=NfsExportRef(server="10.0.0.1", export="/export"),
                           domain_id=uuid.uuid4(), image_id=uuid.uuid4(), volume_id=volume_id)


def _extent(offset: int) -> IscsiExtentTarget:
    return IscsiExtentTarget(lun=IscsiLunRef(portal="10.0.0.2", target="iqn.2026-12.test:t",
                                             lun=1), offset=offset, size=MIB)


class _Hypervisor:
    """QEMU writing the state and the XML where the node asks (libvirt's snapshot)."""

    async def memory_snapshot(self, vm_id: uuid.UUID, disks: Any, memory: Path,
                              metadata: Path) -> MemorySaved:
        def write() -> None:
            memory.parent.mkdir(parents=True, exist_ok=True)
            memory.write_text("state")
            metadata.write_text("<domain/>")
        await asyncio.to_thread(write)
        return MemorySaved(pause_ms=1.0, total_ms=2.0, memory_bytes=5)


@pytest.mark.parametrize("targets", [
    (lambda: (_nfs(uuid.uuid4()), _nfs(uuid.uuid4()))),
    (lambda: (_extent(300 * MIB), _extent(400 * MIB))),
], ids=["nfs", "iscsi"])
def test_a_state_that_cannot_be_stored_is_tried_again_then_dropped_and_said(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, targets: Any) -> None:
    """The disks were switched: the command does not fail (the engine would undo a
    snapshot that stands) but says the memory was not stored, and keeps nothing."""
    volumes = LocalVolumes(tmp_path / "images", ())
    memory, metadata = targets()
    vm_id = uuid.uuid4()
    tries: list[str] = []

    async def export_gone(command: Any, *args: object, **kwargs: object) -> None:
        tries.append(command.source.path)
        raise NodeFailure(ErrorCode.STORAGE_UNREACHABLE, "no route to the export")
    monkeypatch.setattr(memory_states.copies, "copy_volume", export_gone)
    monkeypatch.setattr(memory_states, "STORE_RETRY_S", (0.0, 0.0))
    command = VmMemorySnapshot(vm_id=vm_id, disks=(DiskOverlay(
        active="/a", overlay="/b", reuse=True),), memory=memory, metadata=metadata)
    saved = asyncio.run(memory_states.take(command, _Hypervisor(), volumes))  # type: ignore[arg-type]
    assert (saved.stored, saved.pause_ms, saved.memory_bytes) == (False, 1.0, 5)
    assert saved.problem == ("its memory could not be stored on its volume: no route to the "
                             "export")
    assert len(tries) == 3 and len(set(tries)) == 1  # the state, three times
    assert list((tmp_path / "images" / ".memory").iterdir()) == []  # nothing kept


def test_a_staged_state_left_by_an_interrupted_command_is_dropped_when_given_up(
        tmp_path: Path) -> None:
    volumes = LocalVolumes(tmp_path / "images", ())
    memory, metadata = _nfs(uuid.uuid4()), _nfs(uuid.uuid4())
    vm_id = uuid.uuid4()
    staging = tmp_path / "images" / ".memory"
    staging.mkdir(parents=True)
    kept = sorted(memory_states.staged(volumes, memory_states._target_name(t)).name
                  for t in (memory, metadata))
    for name in kept:
        (staging / name).write_text("state")
    other = staging / f"{uuid.uuid4()}.resume"  # another VM's resume in progress
    other.write_text("other")

    drop = VmMemoryStagingDrop(vm_id=vm_id, memory=memory, metadata=metadata)
    gone = asyncio.run(memory_states.drop(drop, volumes))
    assert sorted(p.name for p in gone) == kept
    assert [p.name for p in staging.iterdir()] == [other.name]
    assert asyncio.run(memory_states.drop(drop, volumes)) == []  # again: gone already
