"""ISO 9660 recognition, on a real image made by xorriso and on what is not one."""

from __future__ import annotations

from pathlib import Path

from overt.engine.model.iso_image import HEADER_BYTES, is_iso9660
from tests.support.boot_iso import build_boot_iso


def test_an_iso_made_by_xorriso_is_recognised(tmp_path: Path) -> None:
    image = build_boot_iso(tmp_path / "boot.iso")
    assert is_iso9660(image.read_bytes()[:HEADER_BYTES])


def test_other_bytes_are_not_an_iso() -> None:
    assert not is_iso9660(b"")
    assert not is_iso9660(b"\0" * HEADER_BYTES)
    qcow2 = b"QFI\xfb" + b"\0" * (HEADER_BYTES - 4)
    assert not is_iso9660(qcow2)
    short = b"\0" * (16 * 2048) + b"\x01CD0"
    assert not is_iso9660(short)
    wrong_version = b"\0" * (16 * 2048) + b"\x01CD001\x02"
    assert not is_iso9660(wrong_version)
