"""A domain's lease areas as local files: one long-lived qemu-storage-daemon per domain
exports `dom_md/ids` and `dom_md/xleases` (reached through libnfs, QEMU's NFS client) or,
on an iSCSI domain, the two windows of its LUN after the metadata area (reached through
libiscsi, QEMU's iSCSI client) as FUSE files the keeper reads and writes with O_DIRECT.

Why this and not `qemu-io` per renewal: a renewal is a read and a write of one sector;
a long-lived daemon keeps the NFS session open, so each costs a round trip to the
server (well under a millisecond on the lab) instead of a QEMU start (tens of ms).
FUSE rather than NBD because the node has no nbd module and a FUSE file needs no
client code: any block node QEMU opens (an iSCSI window too) is exported the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from overt.node.leases.area import FileArea
from overt.node.storage import chap
from overt.protocol.storage import LEASE_AREA_SIZE, LEASE_AREAS
from overt.protocol.vm import IscsiSource

log = logging.getLogger(__name__)

AREA_SIZE = 1 << 20  # 2048 slots of 512 bytes, as sanlock's ids area
AREAS = ("ids", "xleases")


@dataclass(frozen=True)
class DomainRef:
    domain_id: uuid.UUID
    server: str
    export: str
    lun: IscsiSource | None = None  # an iSCSI domain's LUN

    def url(self, area: str) -> str:
        return f"nfs://{self.server}{self.export.rstrip('/')}/{self.domain_id}/dom_md/{area}"

    def blockdevs(self, area: str) -> list[str]:
        """qemu-storage-daemon's block nodes for an area: `area` reads and writes it."""
        if self.lun is not None:
            host, _, port = self.lun.portal.partition(":")
            auth = chap.image_options(self.lun.target, self.lun.chap)
            return ["--blockdev", f"driver=iscsi,node-name={area}-file,transport=tcp,"
                    f"portal={host}:{port or 3260},target={self.lun.target},lun={self.lun.lun}"
                    + (f",{auth}" if auth else ""),
                    "--blockdev", f"driver=raw,node-name={area},file={area}-file,"
                    f"offset={LEASE_AREAS[area]},size={LEASE_AREA_SIZE},cache.direct=on"]
        return ["--blockdev", f"driver=nfs,node-name={area}-file,"
                f"server.type=inet,server.host={self.server},"
                f"path={self.export.rstrip('/')}/{self.domain_id}/dom_md/{area}",
                "--blockdev", f"driver=raw,node-name={area},file={area}-file,cache.direct=on"]


class DomainExport:
    """The running qemu-storage-daemon of one domain and the two areas it exports."""

    def __init__(self, domain: DomainRef, run_dir: Path) -> None:
        self.domain = domain
        self.dir = run_dir / str(domain.domain_id)
        self.process: asyncio.subprocess.Process | None = None
        self.areas: dict[str, FileArea] = {}

    async def start(self) -> None:
        if self.domain.lun is None:  # an iSCSI domain's areas have their size from the start
            for area in AREAS:
                await _grow(self.domain.url(area))
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = ["qemu-storage-daemon"]
        for area in AREAS:
            mountpoint = self.dir / area
            _unmount_stale(mountpoint)
            mountpoint.touch()
            argv += [*self.domain.blockdevs(area), "--export", f"type=fuse,id={area}-export,node-name={area},"
                     f"mountpoint={mountpoint},writable=on"]
        lun = self.domain.lun
        # A CHAP password reaches the daemon as a secret object read from a 0600 file,
        # which lives until the areas are up (the daemon has read it by then).
        with chap.secret_objects([(lun.target, lun.chap)] if lun else []) as objects:
            self.process = await asyncio.create_subprocess_exec(
                argv[0], *objects, *argv[1:], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
            for area in AREAS:
                self.areas[area] = await self._open(self.dir / area)
        log.info("lease areas exported", extra={"storage_domain": str(self.domain.domain_id)})

    async def _open(self, path: Path) -> FileArea:
        for _ in range(100):
            if self.process is not None and self.process.returncode is not None:
                break
            if await asyncio.to_thread(_size, path) >= AREA_SIZE:  # the FUSE file is up
                return FileArea(path)
            await asyncio.sleep(0.05)
        error = b""
        if self.process is not None and self.process.stderr is not None \
                and self.process.returncode is not None:
            error = await self.process.stderr.read()
        said = chap.scrub(error.decode(errors="replace").strip(),
                          self.domain.lun.chap if self.domain.lun else None)
        raise OSError(f"cannot export the lease area {path.name} of domain "
                      f"{self.domain.domain_id}: {said}")

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def stop(self) -> None:
        for area in self.areas.values():
            area.close()
        self.areas.clear()
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.process.wait(), 5)
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()


async def _grow(url: str) -> None:
    """Size an area to AREA_SIZE (domains are laid out with empty files); idempotent."""
    info = await asyncio.create_subprocess_exec(
        "qemu-img", "info", "-U", "-f", "raw", "--output=json", url,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await info.communicate()
    if info.returncode != 0:
        raise OSError(f"cannot read {url}: {err.decode(errors='replace').strip()}")
    if int(json.loads(out)["virtual-size"]) >= AREA_SIZE:
        return
    resize = await asyncio.create_subprocess_exec(
        "qemu-img", "resize", "-q", "-f", "raw", url, str(AREA_SIZE),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = await resize.communicate()
    if resize.returncode != 0:
        raise OSError(f"cannot size {url}: {err.decode(errors='replace').strip()}")


def _size(path: Path) -> int:
    return path.stat().st_size


def _unmount_stale(mountpoint: Path) -> None:
    """A daemon killed outright leaves its FUSE mount behind; a lazy unmount clears it."""
    with contextlib.suppress(OSError):
        mountpoint.stat()
        return
    subprocess.run(["umount", "-l", str(mountpoint)], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
