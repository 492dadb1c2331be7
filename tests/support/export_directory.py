"""NFS exports in the fast lane: an export as a local directory, so the node's NFS
storage code (oVirt's layout, .meta files) runs with qemu-img on real files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from overt.node.storage import nfs_domain


class ExportDirectory:
    """The NFS client of the fast lane (an export as a local directory), with the methods
    of `libnfs.NfsExport` the node's storage code uses; qemu-img runs on the real files."""

    root = Path("/nonexistent")

    def __init__(self, server: str, export: str) -> None:
        self.base = self.root / server / export.strip("/")

    def _at(self, path: str) -> Path:
        return self.base / path.lstrip("/")

    def close(self) -> None:
        return None

    def exists(self, path: str) -> bool:
        return self._at(path).exists()

    def is_dir(self, path: str) -> bool:
        return self._at(path).is_dir()

    def makedirs(self, path: str) -> None:
        self._at(path).mkdir(parents=True, exist_ok=True)

    def listdir(self, path: str) -> list[str]:
        return sorted(p.name for p in self._at(path).iterdir())

    def read_bytes(self, path: str) -> bytes:
        return self._at(path).read_bytes()

    def write_bytes(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._at(path).write_bytes(data)
        self._at(path).chmod(mode)

    def unlink(self, path: str, *, missing_ok: bool = False) -> None:
        self._at(path).unlink(missing_ok=missing_ok)

    def rmdir(self, path: str, *, missing_ok: bool = False) -> None:
        if self._at(path).exists() or not missing_ok:
            self._at(path).rmdir()

    def capacity(self, path: str = "/") -> Any:
        return nfs_domain.Capacity(total=1 << 40, free=1 << 39)


def use_export_directories(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """The node's NFS client reads and writes exports under `root` (server/export/...)."""
    ExportDirectory.root = root
    monkeypatch.setattr(nfs_domain, "NfsExport", ExportDirectory)
    monkeypatch.setattr(nfs_domain, "image_url", lambda server, path: str(
        root / server / path.lstrip("/")))
