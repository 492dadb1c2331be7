"""A writer of the `newc` cpio format, the one the Linux kernel unpacks as initramfs.

Written here so that the test guest's initramfs is reproducible (fixed owners,
modes and times) and needs no cpio tool on the build machine.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from typing import BinaryIO

_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """One member of the archive: a file, a directory or a symlink."""

    name: str
    mode: int
    data: bytes = b""
    device: tuple[int, int] = (0, 0)

    @classmethod
    def directory(cls, name: str, perms: int = 0o755) -> Entry:
        return cls(name, stat.S_IFDIR | perms)

    @classmethod
    def file(cls, name: str, data: bytes, perms: int = 0o644) -> Entry:
        return cls(name, stat.S_IFREG | perms, data)

    @classmethod
    def char_device(cls, name: str, major: int, minor: int, perms: int = 0o600) -> Entry:
        return cls(name, stat.S_IFCHR | perms, device=(major, minor))

    @classmethod
    def symlink(cls, name: str, target: str) -> Entry:
        return cls(name, stat.S_IFLNK | 0o777, target.encode())


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _header(ino: int, entry: Entry, name: bytes) -> bytes:
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    major, minor = entry.device
    size, namesize = len(entry.data), len(name) + 1
    fields = (ino, entry.mode, 0, 0, nlink, 0, size, 0, 0, major, minor, namesize, 0)
    return _MAGIC + b"".join(b"%08X" % value for value in fields)


def write_archive(out: BinaryIO, entries: list[Entry]) -> None:
    """Write `entries` and the trailer to `out` (owner root, mtime 0)."""
    for ino, entry in enumerate([*entries, Entry(_TRAILER, 0)], start=1):
        name = entry.name.lstrip("/").encode()
        head = _header(ino if entry.name != _TRAILER else 0, entry, name) + name + b"\0"
        out.write(head + _pad(len(head)))
        out.write(entry.data + _pad(len(entry.data)))


def read_archive(data: bytes) -> list[Entry]:
    """Parse a `newc` archive (used to check what write_archive produced)."""
    entries: list[Entry] = []
    pos = 0
    while True:
        if data[pos : pos + 6] != _MAGIC:
            raise ValueError(f"not a newc cpio header at offset {pos}")
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        device = (fields[9], fields[10])
        pos += 110
        name = data[pos : pos + namesize - 1].decode()
        pos += namesize + (-(110 + namesize) % 4)
        body = data[pos : pos + size]
        pos += size + (-size % 4)
        if name == _TRAILER:
            return entries
        entries.append(Entry(name, mode, body, device))
