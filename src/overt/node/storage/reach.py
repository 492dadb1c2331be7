"""Probing the storage domains the engine names: can this node read each domain's
metadata now, and how much room is left on an NFS export.

A probe reads through QEMU's own NFS and iSCSI clients (`qemu-img info`), the path a
VM's disks take, in a child process that is killed at the timeout: an unreachable
server must cost the node a bounded wait, never a hung thread.
"""

from __future__ import annotations

import asyncio
import json
import logging

from overt.node.storage import chap
from overt.node.storage.iscsi_domain import lun_options, lun_url
from overt.node.storage.libnfs import NfsError, NfsExport
from overt.node.storage.nfs_domain import volume_url
from overt.protocol.storage import NfsExportRef
from overt.protocol.storage_reach import DomainReach, DomainsReach, ProbeTarget, StorageDomainsProbe

log = logging.getLogger(__name__)


async def probe_domains(command: StorageDomainsProbe) -> DomainsReach:
    """Every domain probed at once, each within the command's timeout."""
    found = await asyncio.gather(*(probe_domain(target, command.timeout_s)
                                   for target in command.domains))
    return DomainsReach(domains=list(found))


async def probe_domain(target: ProbeTarget, timeout_s: float) -> DomainReach:
    if target.nfs is not None:
        url = volume_url(target.nfs, f"{target.domain_id}/dom_md/metadata")
        error, size = await _read_header(url, [url], timeout_s)
    elif target.iscsi is not None:
        lun = target.iscsi
        with chap.secret_objects([(lun.target, lun.chap)]) as objects:
            error, size = await _read_header(lun_url(lun), [
                *objects, "--image-opts", lun_options(lun)], timeout_s)
        error = chap.scrub(error, lun.chap)
        if error and chap.refused_login(error):
            error = f"the iSCSI target refused the login (CHAP): {error}"
    else:
        return DomainReach(domain_id=target.domain_id, reachable=False,
                           error="neither an NFS export nor a LUN was given")
    if error:
        log.warning("storage domain unreachable: %s", error,
                    extra={"storage_domain": str(target.domain_id)})
        return DomainReach(domain_id=target.domain_id, reachable=False, error=error)
    total = free = None
    if target.nfs is not None:
        total, free = await _capacity(target.nfs, timeout_s)
    else:  # the LUN's size as the target reports it now; its free space is the engine's
        total = size
    return DomainReach(domain_id=target.domain_id, reachable=True, total_bytes=total,
                       free_bytes=free)


async def _read_header(url: str, image: list[str], timeout_s: float
                       ) -> tuple[str, int | None]:
    """An empty string and the image's size when QEMU could open `image` (`url`'s
    arguments), else why not."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "qemu-img", "info", "-U", "--output=json", *image,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    except FileNotFoundError:
        return "qemu-img is not installed on this node (Debian package qemu-utils)", None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return f"no answer from {_where(url)} within {timeout_s:g} s", None
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        return (lines[-1] if lines else f"qemu-img exit status {proc.returncode}"), None
    try:
        size = json.loads(out).get("virtual-size")
    except ValueError:
        size = None
    return "", size if isinstance(size, int) and size > 0 else None


async def _capacity(storage: NfsExportRef, timeout_s: float) -> tuple[int | None, int | None]:
    def read() -> tuple[int, int]:
        with NfsExport(storage.server, storage.export) as nfs:
            capacity = nfs.capacity("/")
            return capacity.total, capacity.free
    try:
        return await asyncio.wait_for(asyncio.to_thread(read), timeout_s)
    except (NfsError, OSError, TimeoutError):
        return None, None


def _where(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[0]
