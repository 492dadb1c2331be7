"""Local disk images under the node's storage directory, made and read with qemu-img.

Every path must lie inside the storage directory; images are left readable by QEMU
(which runs as libvirt-qemu), and so is the directory tree leading to them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

from overt.node.errors import NodeFailure, bad_request
from overt.protocol import ErrorCode
from overt.protocol.commands import VolumeCommit, VolumeCreate, VolumeInfo
from overt.protocol.vm import DiskFormat

log = logging.getLogger(__name__)

QEMU_IMG_TIMEOUT_S = 3600.0


class LocalVolumes:
    """The disk images of one storage directory."""

    def __init__(self, storage_dir: Path, import_dirs: tuple[Path, ...] = ()) -> None:
        self.storage_dir = storage_dir
        self.import_dirs = import_dirs

    def ensure_directory(self) -> None:
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self.storage_dir.chmod(0o755)

    def inside(self, raw: str, what: str = "path") -> Path:
        """`raw` as a path inside the storage directory, or a bad_request failure."""
        root = self.storage_dir.resolve()
        path = Path(os.path.normpath(raw))
        resolved = path.resolve()
        if not resolved.is_relative_to(root) or resolved == root:
            raise bad_request(f"{what} {raw} is outside this node's storage directory {root}")
        return path

    async def create(self, command: VolumeCreate) -> VolumeInfo:
        path = self.inside(command.path)
        if path.exists():
            raise NodeFailure(ErrorCode.IMAGE_EXISTS, f"disk image {path} already exists")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        fmt = command.format.value
        if command.copy_from is not None:
            source = self._importable(command.copy_from)
            argv = ["qemu-img", "convert", "-q", "-O", fmt, str(source), str(path)]
        else:
            argv = ["qemu-img", "create", "-q", "-f", fmt]
            if command.backing is not None:
                backing = self._existing(command.backing, "the backing image")
                backing_format = command.backing_format or await self._format_of(backing)
                argv += ["-b", str(backing), "-F", backing_format.value]
            argv += [str(path), str(command.size_bytes)]
        await _qemu_img(argv, f"creating disk image {path}")
        if command.copy_from is not None and command.size_bytes > (
                await self.info(path)).virtual_size:
            await _qemu_img(["qemu-img", "resize", "-q", "-f", fmt, str(path),
                             str(command.size_bytes)], f"growing disk image {path}")
        path.chmod(0o644)
        log.info("disk image created", extra={"volume": str(path)})
        return await self.info(path)

    async def commit(self, command: VolumeCommit) -> VolumeInfo:
        """Merge `top` into `base`, its backing volume, and rebase `child` onto `base`.

        Safe to repeat after a crash: committing `top` again writes the same data, and
        the rebase only rewrites `child`'s header (`-u`: `base` now reads as `top` did)."""
        top = self._existing(command.top, "the volume to merge")
        base = self._existing(command.base, "the volume to merge into")
        child = self._existing(command.child, "the volume over it") if command.child else None
        backing = (await self.info(top)).backing
        if backing is None or not same_file(backing, base):
            raise bad_request(f"{base} is not the backing volume of {top} (it is {backing})")
        await commit_into_backing(top)
        if child is not None:
            await rebase(child, base, command.base_format)
        log.info("volume merged", extra={"volume": str(top), "base": str(base)})
        return await self.info(base)

    async def delete(self, raw: str) -> None:
        path = self._existing(raw, "disk image")
        path.unlink()
        log.info("disk image deleted", extra={"volume": str(path)})

    async def info(self, raw: str | Path) -> VolumeInfo:
        path = self._existing(str(raw), "disk image")
        out = await _qemu_img(["qemu-img", "info", "-U", "--output=json", str(path)],
                              f"reading disk image {path}")
        data = json.loads(out)
        try:
            fmt = DiskFormat(data["format"])
        except ValueError:
            raise NodeFailure(ErrorCode.BAD_REQUEST, f"disk image {path} has format "
                              f"{data['format']}, which Overt does not use") from None
        return VolumeInfo(path=str(path), format=fmt, virtual_size=int(data["virtual-size"]),
                          actual_size=int(data.get("actual-size", 0)),
                          backing=data.get("full-backing-filename") or data.get(
                              "backing-filename"))

    async def _format_of(self, path: Path) -> DiskFormat:
        return (await self.info(path)).format

    def _importable(self, raw: str) -> Path:
        """An image to copy: in the storage directory or in one of the import directories."""
        resolved = Path(os.path.normpath(raw)).resolve()
        for root in self.import_dirs:
            if resolved.is_relative_to(root.resolve()):
                if not resolved.is_file():
                    raise NodeFailure(ErrorCode.IMAGE_MISSING,
                                      f"the image to copy {resolved} does not exist")
                return resolved
        return self._existing(raw, "the image to copy")

    def existing(self, raw: str, what: str) -> Path:
        """An image that must exist inside the storage directory."""
        return self._existing(raw, what)

    def _existing(self, raw: str, what: str) -> Path:
        path = self.inside(raw, what)
        if not path.is_file():
            raise NodeFailure(ErrorCode.IMAGE_MISSING, f"{what} {path} does not exist")
        return path


async def _qemu_img(argv: list[str], action: str) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    except FileNotFoundError:
        raise NodeFailure(ErrorCode.INTERNAL, "qemu-img is not installed on this node "
                          "(Debian package qemu-utils)") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), QEMU_IMG_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise NodeFailure(ErrorCode.TIMEOUT, f"{action} took longer than "
                          f"{QEMU_IMG_TIMEOUT_S:g} s") from None
    if proc.returncode != 0:
        detail = err.decode(errors="replace").strip().splitlines()
        message = detail[-1] if detail else f"exit status {proc.returncode}"
        raise NodeFailure(ErrorCode.HYPERVISOR_ERROR, f"{action} failed: {message}")
    return out.decode()


async def create_overlay(path: Path, backing: Path, backing_format: DiskFormat) -> None:
    """A new qcow2 volume over `backing` (a snapshot's new active volume)."""
    await _qemu_img(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(backing),
                     "-F", backing_format.value, str(path)], f"creating volume {path}")
    _readable_by_qemu(path)


async def rebase(child: Path, base: Path, base_format: DiskFormat) -> None:
    """Point `child` at `base` without copying (`base` already reads as its old backing)."""
    await _qemu_img(["qemu-img", "rebase", "-q", "-u", "-f", "qcow2", "-b", str(base),
                     "-F", base_format.value, str(child)], f"rebasing {child} onto {base}")


async def commit_into_backing(top: Path) -> None:
    await _qemu_img(["qemu-img", "commit", "-q", "-d", "-f", "qcow2", str(top)],
                    f"merging {top} into its backing volume")


async def backing_chain(path: Path) -> list[str]:
    """The volumes `path` reads through, itself first, as qemu-img sees them on storage."""
    out = await _qemu_img(["qemu-img", "info", "-U", "--backing-chain", "--output=json",
                           str(path)], f"reading the chain of {path}")
    return [str(layer["filename"]) for layer in json.loads(out)]


def same_file(one: str | Path, other: str | Path) -> bool:
    return Path(one).resolve() == Path(other).resolve()


def exists(path: str) -> bool:
    return Path(path).exists()


def _readable_by_qemu(path: Path) -> None:
    path.chmod(0o644)
