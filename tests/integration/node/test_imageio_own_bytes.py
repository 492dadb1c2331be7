"""A qcow2 volume's own bytes, as a `format=cow` download serves them (real qemu-img and
qemu-nbd's source options): of a file its whole length, of an iSCSI extent only up to
the qcow2's end, never what an earlier volume left in the rest of the extent. The LUN is
a local file here, under the same `raw` offset/size window the `iscsi` driver sits under
on a real target."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from overt.node import imageio
from overt.node.errors import NodeFailure
from overt.node.storage import iscsi_domain
from overt.protocol.storage import IscsiExtentTarget, IscsiLunRef
from overt.protocol.vm import DiskFormat

MIB = 1 << 20
LUN = IscsiLunRef(portal="10.9.9.9", target="iqn.2026-11.dev.overt:lun", lun=1)
STALE = b"\xee"


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def _volume(path: Path) -> None:
    """A qcow2 volume with data in two places and a hole between."""
    _run("qemu-img", "create", "-q", "-f", "qcow2", str(path), str(32 * MIB))
    _run("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 1M 2M", "-c", "write -P 0xa5 20M 64k",
         str(path))


def _file_window(lun_file: Path):  # type: ignore[no-untyped-def]
    def window(lun: IscsiLunRef, offset: int, size: int, fmt: DiskFormat | None = None) -> str:
        raw = (f"driver=raw,offset={offset},size={size},file.driver=file,"
               f"file.filename={lun_file},file.locking=off")
        if fmt is None or fmt is DiskFormat.RAW:
            return raw
        return f"driver={fmt.value}," + ",".join(f"file.{part}" for part in raw.split(","))
    return window


async def test_an_extents_own_bytes_end_with_its_qcow2(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    volume, lun_file = tmp_path / "volume.qcow2", tmp_path / "lun1.img"
    await asyncio.to_thread(_volume, volume)
    offset, extent_size = 4 * MIB, 40 * MIB
    with lun_file.open("wb") as lun:  # an extent an earlier volume filled
        lun.truncate(64 * MIB)
        lun.seek(offset)
        lun.write(STALE * extent_size)
        lun.seek(offset)
        lun.write(volume.read_bytes())
    monkeypatch.setattr(iscsi_domain, "window", _file_window(lun_file))

    source, size = await imageio.own_bytes(
        "iscsi://10.9.9.9/lun", IscsiExtentTarget(lun=LUN, offset=offset, size=extent_size))
    assert size == volume.stat().st_size < extent_size
    served = tmp_path / "served.qcow2"  # read as qemu-nbd serves it (raw)
    await asyncio.to_thread(_run, "qemu-img", "convert", "-f", "raw", "-O", "raw", source,
                            str(served))
    assert served.read_bytes() == volume.read_bytes()
    assert STALE * 512 not in served.read_bytes()
    _run("qemu-img", "check", "-q", str(served))
    _run("qemu-img", "compare", "-q", "-f", "qcow2", "-F", "qcow2", str(served), str(volume))

    with pytest.raises(NodeFailure):  # an extent that holds no qcow2 is refused
        await imageio.own_bytes("iscsi://10.9.9.9/lun", IscsiExtentTarget(
            lun=LUN, offset=48 * MIB, size=8 * MIB))


async def test_a_files_own_bytes_are_the_whole_file(tmp_path: Path) -> None:
    volume = tmp_path / "volume.qcow2"
    await asyncio.to_thread(_volume, volume)
    assert await imageio.own_bytes(str(volume), None) == (str(volume), volume.stat().st_size)
