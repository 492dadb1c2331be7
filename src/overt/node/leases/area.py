"""Where lease slots live: a file of 512-byte sectors read and written with O_DIRECT.

On a shared domain the file is a FUSE export of qemu-storage-daemon (see `export.py`),
so every read and write goes through QEMU's block layer to the NFS server (libnfs)
or the iSCSI target (libiscsi) uncached; in unit tests it is a plain local file.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Protocol

from overt.node.leases.record import SECTOR


class LeaseArea(Protocol):
    """Slots of one area (the domain's `ids` or `xleases`); calls block, callers thread them."""

    def read(self, slot: int) -> bytes: ...

    def write(self, slot: int, sector: bytes) -> None: ...

    def read_slots(self, count: int) -> list[bytes]: ...


class FileArea:
    """A lease area in a file; `direct` bypasses the page cache, as leases on shared
    storage must (a cached read would show a dead owner's old timestamp as unchanged)."""

    def __init__(self, path: Path, *, direct: bool = True) -> None:
        self.path = path
        flags = os.O_RDWR | (getattr(os, "O_DIRECT", 0) if direct else 0)
        self._fd = os.open(path, flags)

    def close(self) -> None:
        os.close(self._fd)

    def read(self, slot: int) -> bytes:
        return self.read_slots_from(slot, 1)[0]

    def read_slots(self, count: int) -> list[bytes]:
        return self.read_slots_from(0, count)

    def read_slots_from(self, first: int, count: int) -> list[bytes]:
        buffer = mmap.mmap(-1, SECTOR * count)  # page-aligned, as O_DIRECT needs
        try:
            got = os.preadv(self._fd, [buffer], first * SECTOR)
            data = bytes(buffer[:got]).ljust(SECTOR * count, b"\0")
        finally:
            buffer.close()
        return [data[i * SECTOR:(i + 1) * SECTOR] for i in range(count)]

    def write(self, slot: int, sector: bytes) -> None:
        buffer = mmap.mmap(-1, SECTOR)
        try:
            buffer.write(sector[:SECTOR].ljust(SECTOR, b"\0"))
            written = os.pwritev(self._fd, [buffer], slot * SECTOR)
        finally:
            buffer.close()
        if written != SECTOR:
            raise OSError(f"short write to lease slot {slot} of {self.path}")
        if not getattr(os, "O_DIRECT", 0):
            os.fsync(self._fd)
