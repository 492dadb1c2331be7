"""The node images an engine serves: directories `<images>/<name>/` holding `vmlinuz` and
`initrd.img` (what `overt node-image build` writes)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

KERNEL = "vmlinuz"
INITRD = "initrd.img"
IMAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class NodeImage:
    name: str
    kernel: Path
    initrd: Path


class NodeImages:
    """The images under `directory` (None: an engine with no node images)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def get(self, name: str) -> NodeImage | None:
        if self.directory is None or not IMAGE_NAME.match(name):
            return None
        base = self.directory / name
        kernel, initrd = base / KERNEL, base / INITRD
        if not kernel.is_file() or not initrd.is_file():
            return None
        return NodeImage(name, kernel, initrd)

    def names(self) -> list[str]:
        if self.directory is None or not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.iterdir() if self.get(p.name))
