"""Small files and directories on an NFS export, through libnfs (the library QEMU's NFS
driver uses), without a kernel mount.

Nodes have no kernel NFS client, and QEMU's block layer can create and open images but
cannot make directories, list them or write a few bytes of metadata. libnfs can: it is
already on every node (`libnfs13`, a dependency of `qemu-block-extra`), so it is bound
here with ctypes rather than adding a compiled binding. Calls are blocking; callers run
them in a thread. Only the synchronous API of libnfs 4.x is used.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

_LIB_NAMES = ("libnfs.so.13", "libnfs.so.14", "libnfs.so")
_CHUNK = 1 << 20


class NfsError(OSError):
    """An NFS call failed; `errno` is set when libnfs gave one (as a negative return)."""


class _Stat64(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "dev", "ino", "mode", "nlink", "uid", "gid", "rdev", "size", "blksize", "blocks",
        "atime", "mtime", "ctime", "atime_nsec", "mtime_nsec", "ctime_nsec", "used")]


class _StatVfs64(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "bsize", "frsize", "blocks", "bfree", "bavail", "files", "ffree", "favail", "fsid",
        "flag", "namemax")]


class _DirEnt(ctypes.Structure):
    pass


_DirEnt._fields_ = [("next", ctypes.POINTER(_DirEnt)), ("name", ctypes.c_char_p)]


@dataclass(frozen=True)
class Capacity:
    total: int
    free: int  # available to this client


def _load() -> ctypes.CDLL:
    names = list(_LIB_NAMES)
    found = ctypes.util.find_library("nfs")
    if found:
        names.append(found)
    for name in names:
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
        _declare(lib)
        return lib
    raise NfsError("libnfs is not installed on this node (Debian package libnfs13, "
                   "which qemu-block-extra brings)")


def _declare(lib: ctypes.CDLL) -> None:
    vp, cp, u64, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint64, ctypes.c_int
    pvp = ctypes.POINTER(ctypes.c_void_p)
    signatures: dict[str, tuple[list[object], object]] = {
        "nfs_init_context": ([], vp),
        "nfs_destroy_context": ([vp], None),
        "nfs_get_error": ([vp], cp),
        "nfs_mount": ([vp, cp, cp], i),
        "nfs_mkdir": ([vp, cp], i),
        "nfs_rmdir": ([vp, cp], i),
        "nfs_unlink": ([vp, cp], i),
        "nfs_rename": ([vp, cp, cp], i),
        "nfs_creat": ([vp, cp, i, pvp], i),
        "nfs_open": ([vp, cp, i, pvp], i),
        "nfs_close": ([vp, vp], i),
        "nfs_pread": ([vp, vp, u64, u64, vp], i),
        "nfs_pwrite": ([vp, vp, u64, u64, vp], i),
        "nfs_stat64": ([vp, cp, ctypes.POINTER(_Stat64)], i),
        "nfs_statvfs64": ([vp, cp, ctypes.POINTER(_StatVfs64)], i),
        "nfs_opendir": ([vp, cp, pvp], i),
        "nfs_readdir": ([vp, vp], ctypes.POINTER(_DirEnt)),
        "nfs_closedir": ([vp, vp], None),
    }
    for name, (args, result) in signatures.items():
        function = getattr(lib, name)
        function.argtypes = args
        function.restype = result


class NfsExport:
    """One mounted export (`server`:`export`); paths are absolute within the export."""

    def __init__(self, server: str, export: str) -> None:
        self._lib = _load()
        self._ctx = self._lib.nfs_init_context()
        if not self._ctx:
            raise NfsError("libnfs could not make a context")
        self.server, self.export = server, export
        self._check(self._lib.nfs_mount(self._ctx, server.encode(), export.encode()),
                    f"mounting {server}:{export}")

    def close(self) -> None:
        if self._ctx:
            self._lib.nfs_destroy_context(self._ctx)
            self._ctx = None

    def __enter__(self) -> NfsExport:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _check(self, result: int, action: str) -> int:
        if result < 0:
            detail = self._lib.nfs_get_error(self._ctx)
            message = detail.decode(errors="replace") if detail else os.strerror(-result)
            raise NfsError(-result, f"{action}: {message}")
        return result

    def stat(self, path: str) -> os.stat_result | None:
        """The file's mode and size, or None if it does not exist."""
        st = _Stat64()
        result = self._lib.nfs_stat64(self._ctx, path.encode(), ctypes.byref(st))
        if result == -2:  # ENOENT
            return None
        self._check(result, f"reading the attributes of {path}")
        return os.stat_result((st.mode, st.ino, st.dev, st.nlink, st.uid, st.gid, st.size,
                               st.atime, st.mtime, st.ctime))

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    def is_dir(self, path: str) -> bool:
        found = self.stat(path)
        return found is not None and stat.S_ISDIR(found.st_mode)

    def makedirs(self, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        current = ""
        for part in parts:
            current += "/" + part
            if self.is_dir(current):
                continue
            result = self._lib.nfs_mkdir(self._ctx, current.encode())
            if result < 0 and not self.is_dir(current):
                self._check(result, f"making directory {current}")

    def listdir(self, path: str) -> list[str]:
        handle = ctypes.c_void_p()
        self._check(self._lib.nfs_opendir(self._ctx, path.encode(), ctypes.byref(handle)),
                    f"listing {path}")
        names: list[str] = []
        try:
            while True:
                entry = self._lib.nfs_readdir(self._ctx, handle)
                if not entry:
                    break
                name = (entry.contents.name or b"").decode(errors="replace")
                if name not in (".", ".."):
                    names.append(name)
        finally:
            self._lib.nfs_closedir(self._ctx, handle)
        return sorted(names)

    @contextmanager
    def _opened(self, path: str, flags: int, mode: int | None = None) -> Iterator[ctypes.c_void_p]:
        handle = ctypes.c_void_p()
        if mode is not None:
            self._check(self._lib.nfs_creat(self._ctx, path.encode(), mode, ctypes.byref(handle)),
                        f"creating {path}")
        else:
            self._check(self._lib.nfs_open(self._ctx, path.encode(), flags, ctypes.byref(handle)),
                        f"opening {path}")
        try:
            yield handle
        finally:
            self._lib.nfs_close(self._ctx, handle)

    def read_bytes(self, path: str) -> bytes:
        found = self.stat(path)
        if found is None:
            raise NfsError(2, f"{path} does not exist on {self.server}:{self.export}")
        data = bytearray()
        with self._opened(path, os.O_RDONLY) as handle:
            while len(data) < found.st_size:
                count = min(_CHUNK, found.st_size - len(data))
                buffer = ctypes.create_string_buffer(count)
                got = self._check(self._lib.nfs_pread(self._ctx, handle, len(data), count,
                                                      buffer), f"reading {path}")
                if got == 0:
                    break
                data += buffer.raw[:got]
        return bytes(data)

    def write_bytes(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Replace `path` with `data`: written to a temporary name, then renamed over it."""
        temporary = f"{path}.new"
        with self._opened(temporary, os.O_WRONLY, mode) as handle:
            done = 0
            while done < len(data):
                chunk = data[done:done + _CHUNK]
                written = self._check(self._lib.nfs_pwrite(self._ctx, handle, done, len(chunk),
                                                           chunk), f"writing {temporary}")
                if written == 0:
                    raise NfsError(f"writing {temporary}: nothing was written")
                done += written
        self._check(self._lib.nfs_rename(self._ctx, temporary.encode(), path.encode()),
                    f"renaming {temporary} to {path}")

    def unlink(self, path: str, *, missing_ok: bool = False) -> None:
        result = self._lib.nfs_unlink(self._ctx, path.encode())
        if result == -2 and missing_ok:
            return
        self._check(result, f"removing {path}")

    def rmdir(self, path: str, *, missing_ok: bool = False) -> None:
        result = self._lib.nfs_rmdir(self._ctx, path.encode())
        if result == -2 and missing_ok:
            return
        self._check(result, f"removing directory {path}")

    def capacity(self, path: str = "/") -> Capacity:
        vfs = _StatVfs64()
        self._check(self._lib.nfs_statvfs64(self._ctx, path.encode(), ctypes.byref(vfs)),
                    f"reading the capacity of {self.server}:{self.export}")
        unit = vfs.frsize or vfs.bsize
        return Capacity(total=vfs.blocks * unit, free=vfs.bavail * unit)
