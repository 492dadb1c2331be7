"""Volumes of an iSCSI domain as extents of its LUN, made by the node's own code with
qemu-img; the LUN is a local file here (QEMU's `file` driver under the same `raw`
offset/size window the `iscsi` driver sits under on a real target). A thin volume is a
qcow2 layer on one extent whose header names another extent (a template's) as its
backing: it reads the template's data and keeps its own writes."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from overt.node.errors import NodeFailure
from overt.node.storage import copies, iscsi_domain
from overt.node.storage.local import LocalVolumes
from overt.protocol.storage import (
    DOMAIN_AREA,
    ExtentFormat,
    ExtentRef,
    IscsiExtentTarget,
    IscsiLunRef,
    VolumeCopy,
)
from overt.protocol.vm import DiskFormat, FileSource, IscsiSource

MIB = 1 << 20
LUN = IscsiLunRef(portal="10.9.9.9", target="iqn.2026-11.dev.overt:lun", lun=1)


def _file_window(lun_file: Path):  # type: ignore[no-untyped-def]
    def window(lun: IscsiLunRef, offset: int, size: int, fmt: DiskFormat | None = None) -> str:
        # No file locks: the overlay and its backing open the same file, as two extents of
        # one LUN do (the iscsi driver takes no locks).
        raw = (f"driver=raw,offset={offset},size={size},file.driver=file,"
               f"file.filename={lun_file},file.locking=off")
        if fmt is None or fmt is DiskFormat.RAW:
            return raw
        return f"driver={fmt.value}," + ",".join(f"file.{part}" for part in raw.split(","))
    return window


def _io(opts: str, command: str) -> str:
    done = subprocess.run(["qemu-io", "--image-opts", "-c", command, opts], check=True,
                          capture_output=True, text=True)
    return done.stdout


async def test_a_thin_extent_reads_its_template_extent_and_keeps_its_own_writes(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lun_file = tmp_path / "lun1.img"
    await asyncio.to_thread(subprocess.run, ["truncate", "-s", str(64 * MIB), str(lun_file)],
                            check=True)
    window = _file_window(lun_file)
    monkeypatch.setattr(iscsi_domain, "window", window)
    monkeypatch.setattr(iscsi_domain, "lun_url", lambda lun: str(lun_file))

    base = ExtentRef(offset=DOMAIN_AREA, size=16 * MIB, format=DiskFormat.QCOW2)
    await iscsi_domain.execute(ExtentFormat(lun=LUN, offset=base.offset, size=base.size,
                                            virtual_size=8 * MIB))
    base_opts = window(LUN, base.offset, base.size, DiskFormat.QCOW2)
    await asyncio.to_thread(_io, base_opts, "write -P 0x11 0 64k")

    thin_at = base.offset + base.size
    made = await iscsi_domain.execute(ExtentFormat(
        lun=LUN, offset=thin_at, size=16 * MIB, virtual_size=8 * MIB, backing=base))
    assert made.virtual_size == 8 * MIB  # type: ignore[union-attr]
    thin_opts = window(LUN, thin_at, 16 * MIB, DiskFormat.QCOW2)
    info = json.loads((await asyncio.to_thread(
        subprocess.run, ["qemu-img", "info", "-U", "--output=json", "--image-opts", thin_opts],
        check=True, capture_output=True, text=True)).stdout)
    backing = json.loads(info["backing-filename"].removeprefix("json:"))
    assert backing["file"]["offset"] == base.offset and backing["file"]["size"] == base.size
    assert info["backing-filename-format"] == "qcow2"

    assert "Pattern verification failed" not in await asyncio.to_thread(
        _io, thin_opts, "read -P 0x11 0 64k")
    await asyncio.to_thread(_io, thin_opts, "write -P 0x22 0 64k")
    assert "Pattern verification failed" not in await asyncio.to_thread(
        _io, base_opts, "read -P 0x11 0 64k")  # the template's extent is untouched

    with pytest.raises(NodeFailure, match="overlaps its backing extent"):
        await iscsi_domain.execute(ExtentFormat(
            lun=LUN, offset=base.offset + MIB, size=16 * MIB, virtual_size=8 * MIB,
            backing=base))


async def test_a_full_copy_reads_a_thin_extent_through_and_writes_an_extent_of_its_own(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lun_file = tmp_path / "lun1.img"
    await asyncio.to_thread(subprocess.run, ["truncate", "-s", str(64 * MIB), str(lun_file)],
                            check=True)
    window = _file_window(lun_file)
    monkeypatch.setattr(iscsi_domain, "window", window)
    monkeypatch.setattr(iscsi_domain, "lun_url", lambda lun: str(lun_file))
    volumes = LocalVolumes(tmp_path / "images")
    image = tmp_path / "images" / "guest.qcow2"
    image.parent.mkdir()
    await asyncio.to_thread(subprocess.run, ["qemu-img", "create", "-q", "-f", "qcow2",
                                             str(image), str(8 * MIB)], check=True)
    await asyncio.to_thread(_io, f"driver=qcow2,file.driver=file,file.filename={image}",
                            "write -P 0x11 0 64k")

    # A file into an extent (a template made from a VM on local storage), ...
    template = IscsiExtentTarget(lun=LUN, offset=DOMAIN_AREA, size=16 * MIB)
    await copies.copy_volume(VolumeCopy(source=FileSource(path=str(image)), target=template,
                                        size_bytes=8 * MIB), volumes)
    # ... a thin extent over it with writes of its own, then that flattened to a third.
    thin_at = template.offset + template.size
    await iscsi_domain.execute(ExtentFormat(
        lun=LUN, offset=thin_at, size=16 * MIB, virtual_size=8 * MIB,
        backing=ExtentRef(offset=template.offset, size=template.size)))
    await asyncio.to_thread(_io, window(LUN, thin_at, 16 * MIB, DiskFormat.QCOW2),
                            "write -P 0x22 64k 64k")
    clone = IscsiExtentTarget(lun=LUN, offset=thin_at + 16 * MIB, size=16 * MIB)
    made = await copies.copy_volume(VolumeCopy(
        source=IscsiSource(portal=LUN.portal, target=LUN.target, lun=LUN.lun, offset=thin_at,
                           size=16 * MIB), target=clone, size_bytes=8 * MIB), volumes)
    assert (made.format, made.virtual_size) == (DiskFormat.QCOW2, 8 * MIB)
    clone_opts = window(LUN, clone.offset, clone.size, DiskFormat.QCOW2)
    info = json.loads((await asyncio.to_thread(
        subprocess.run, ["qemu-img", "info", "-U", "--output=json", "--image-opts", clone_opts],
        check=True, capture_output=True, text=True)).stdout)
    assert "backing-filename" not in info  # a clone stands on its own
    for pattern, offset in ((0x11, "0"), (0x22, "64k")):
        assert "Pattern verification failed" not in await asyncio.to_thread(
            _io, clone_opts, f"read -P {pattern:#x} {offset} 64k")
