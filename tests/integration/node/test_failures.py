"""libvirt failures reach the engine as protocol errors an administrator understands."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from overt.protocol import ErrorCode
from overt.protocol.commands import (
    VmDestroy,
    VmStart,
    VolumeCreate,
    VolumeDelete,
    VolumeInfo,
    VolumeInfoCommand,
)
from overt.protocol.host import VmStatusReport
from overt.protocol.vm import DiskSpec, FileSource, NicSpec, VmSpec
from tests.integration.node.conftest import Node

pytestmark = pytest.mark.vm


def _refused(node: Node, spec: VmSpec) -> tuple[ErrorCode, str]:
    reply = node.call(VmStart(vm_id=spec.id, spec=spec))
    assert not reply.ok and reply.error is not None
    return reply.error.code, reply.error.message


def test_a_missing_image_is_named(node: Node, vm: VmSpec) -> None:
    gone = vm.model_copy(update={"disks": (DiskSpec(
        id=uuid.uuid4(), source=FileSource(path=str(node.storage_dir / "nope.qcow2"))),)})
    code, message = _refused(node, gone)
    assert code is ErrorCode.IMAGE_MISSING and "nope.qcow2" in message


def test_a_missing_bridge_is_a_network_error(node: Node, vm: VmSpec) -> None:
    bridged = vm.model_copy(update={"nics": (NicSpec(
        id=uuid.uuid4(), mac="56:6f:00:00:00:01", bridge="ovndnobr0"),)})
    code, message = _refused(node, bridged)
    assert code is ErrorCode.NETWORK_MISSING and "bridge" in message


def test_too_much_memory_is_not_enough_memory(node: Node, vm: VmSpec) -> None:
    code, message = _refused(node, vm.model_copy(update={"memory_mib": 4 * 1024 * 1024}))
    assert code is ErrorCode.NOT_ENOUGH_MEMORY and "memory" in message


def test_a_second_vm_with_the_same_name_is_refused(node: Node, vm: VmSpec) -> None:
    node.ok(VmStart(vm_id=vm.id, spec=vm, paused=True), VmStatusReport)
    twin = vm.model_copy(update={"id": uuid.uuid4()})
    code, message = _refused(node, twin)
    assert code is ErrorCode.VM_EXISTS and vm.name in message
    node.ok(VmDestroy(vm_id=vm.id), VmStatusReport)


def test_commands_on_an_unknown_vm_say_so(node: Node) -> None:
    reply = node.call(VmDestroy(vm_id=uuid.uuid4()))
    assert reply.error is not None and reply.error.code is ErrorCode.NO_SUCH_VM


def test_volumes_are_made_read_and_deleted_inside_the_storage_dir(node: Node) -> None:
    path = node.storage_dir / "vols" / f"{uuid.uuid4().hex}.qcow2"
    made = node.ok(VolumeCreate(path=str(path), size_bytes=32 << 20,
                                backing=str(node.base_image)), VolumeInfo)
    assert made.virtual_size == 32 << 20 and made.backing == str(node.base_image)
    assert path.stat().st_mode & 0o044 == 0o044  # QEMU (libvirt-qemu) can read it
    again = node.call(VolumeCreate(path=str(path), size_bytes=1 << 20))
    assert again.error is not None and again.error.code is ErrorCode.IMAGE_EXISTS
    copy = path.with_name("copy.raw")
    copied = node.ok(VolumeCreate(path=str(copy), format="raw", size_bytes=1 << 20,
                                  copy_from=str(node.base_image)), VolumeInfo)
    assert copied.format.value == "raw" and copied.virtual_size == 64 << 20
    assert node.ok(VolumeInfoCommand(path=str(path)), VolumeInfo) == made
    assert node.call(VolumeDelete(path=str(path))).ok and not path.exists()
    missing = node.call(VolumeInfoCommand(path=str(path)))
    assert missing.error is not None and missing.error.code is ErrorCode.IMAGE_MISSING


@pytest.mark.parametrize("outside", ["/etc/passwd", "/var/tmp/../../etc/x.qcow2"])
def test_paths_outside_the_storage_dir_are_refused(node: Node, outside: str) -> None:
    for command in (VolumeCreate(path=outside, size_bytes=1 << 20),
                    VolumeInfoCommand(path=outside), VolumeDelete(path=outside)):
        reply = node.call(command)
        assert reply.error is not None and reply.error.code is ErrorCode.BAD_REQUEST
        assert "outside this node's storage directory" in reply.error.message
    assert Path("/etc/passwd").exists()
