"""Disk-only snapshots and live merges of a running domain's disks over libvirt.

Disks are found by the volume QEMU writes (the `<source file>` of their live XML), so a
retried command sees what a first attempt did: a snapshot already taken, or a merge
already done, is success. The engine decides every volume's name; libvirt writes them.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import libvirt

from overt.node.errors import NodeFailure, invalid_state
from overt.node.hypervisor.domain_xml import parse_libvirt_xml
from overt.node.hypervisor.libvirt_errors import VmCalls, node_failure
from overt.node.storage.local import exists
from overt.protocol import ErrorCode
from overt.protocol.commands import DiskOverlay, MemorySaved
from overt.protocol.storage import extent_location, parse_extent_location

log = logging.getLogger(__name__)
POLL_S = 0.1
_SNAPSHOT_FLAGS = (libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
                   | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
                   | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC)
# With the memory: LIVE lets the guest run while QEMU writes its RAM (migration to the
# file), pausing it only for the last dirty pages, the device state and the disks' switch.
_MEMORY_FLAGS = (libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_LIVE
                 | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
                 | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC)
PAUSE_POLL_S = 0.002


def _layer_name(source: ET.Element | None) -> str | None:
    """A layer's volume: a file's path, an NFS volume's path on its server, or an iSCSI
    volume's `extent_location` (its LUN and slice; a whole LUN is no volume of ours)."""
    if source is None:
        return None
    if source.get("file") is not None:
        return source.get("file")
    if source.get("protocol") == "nfs":
        return source.get("name")
    if source.get("protocol") == "iscsi":
        found = source.find("slices/slice[@type='storage']")
        target, _, lun = (source.get("name") or "").rpartition("/")
        if found is None or not lun.isdigit():
            return None
        return extent_location(target, int(lun), int(found.get("offset", "0")),
                               int(found.get("size", "0")))
    return None


def disk_chains(xml: str) -> dict[str, list[str]]:
    """Each file, NFS or iSCSI-extent disk's target and its chain as the live XML has it,
    active first."""
    return {target: [name for name, _ref in layers] for target, layers in _layers(xml).items()}


def _layers(xml: str) -> dict[str, list[tuple[str, str | None]]]:
    """Each disk's chain with, per layer, libvirt's name for it (`vda[3]`) when the live
    XML numbers it: libvirt finds a network layer by that name, not by its path."""
    chains: dict[str, list[tuple[str, str | None]]] = {}
    for disk in parse_libvirt_xml(xml).findall("devices/disk"):
        found = disk.find("target")
        target = found.get("dev", "") if found is not None else ""
        chain: list[tuple[str, str | None]] = []
        layer: ET.Element | None = disk
        while layer is not None:
            source = layer.find("source")
            name = _layer_name(source)
            if name is None or source is None:
                break
            index = layer.get("index") if layer is not disk else source.get("index")
            numbered = index is not None and source.get("protocol") is not None
            chain.append((name, f"{target}[{index}]" if numbered else None))
            layer = layer.find("backingStore")
        if target and chain:
            chains[target] = chain
    return chains


def snapshot_xml(xml: str, disks: Sequence[DiskOverlay], memory: Path | None = None) -> str:
    """`<domainsnapshot>` making an external overlay of the given disks and none of the
    domain's others (every disk is listed: libvirt's default for the rest may differ).
    A network disk's overlay (made beforehand) is reached as its active volume is: the
    same server and client options, another path (NFS) or another slice of the LUN (iSCSI)."""
    overlays = {disk.active: disk for disk in disks}
    root = ET.Element("domainsnapshot")
    if memory is not None:  # the RAM and device state, in libvirt's save image format
        ET.SubElement(root, "memory", snapshot="external", file=str(memory))
    listed = ET.SubElement(root, "disks")
    for device in parse_libvirt_xml(xml).findall("devices/disk"):
        found = device.find("target")
        target = found.get("dev", "") if found is not None else ""
        if not target:
            continue
        active = device.find("source")
        name = _layer_name(active)
        overlay = overlays.get(name) if name is not None else None
        if overlay is None or active is None:
            ET.SubElement(listed, "disk", name=target, snapshot="no")
            continue
        if active.get("protocol") in ("nfs", "iscsi"):
            disk = ET.SubElement(listed, "disk", name=target, snapshot="external",
                                 type="network")
            ET.SubElement(disk, "driver", type="qcow2")
            _network_overlay(disk, active, overlay.overlay)
            continue
        disk = ET.SubElement(listed, "disk", name=target, snapshot="external")
        ET.SubElement(disk, "driver", type="qcow2")
        ET.SubElement(disk, "source", file=overlay.overlay)
    return ET.tostring(root, encoding="unicode")


def _network_overlay(disk: ET.Element, active: ET.Element, overlay: str) -> None:
    """The overlay's `<source>`, reached as the active volume is (its host, identity and
    CHAP auth); an iSCSI overlay is its extent of the LUN, a `<slices>` window."""
    protocol = active.get("protocol", "")
    if protocol == "iscsi":
        extent = parse_extent_location(overlay)
        if extent is None:
            raise NodeFailure(ErrorCode.BAD_REQUEST, f"{overlay} is not an extent of a LUN")
        target, lun, offset, size = extent
        source = ET.SubElement(disk, "source", protocol=protocol, name=f"{target}/{lun}")
    else:
        source = ET.SubElement(disk, "source", protocol=protocol, name=overlay)
    for child in active:
        if child.tag in ("host", "identity", "auth"):
            source.append(copy.deepcopy(child))
    if protocol == "iscsi":
        slices = ET.SubElement(source, "slices")
        ET.SubElement(slices, "slice", type="storage", offset=str(offset), size=str(size))


def _fresh_file(path: Path) -> None:
    """libvirt writes a memory state only to a file that does not exist (an earlier
    attempt's, whose snapshot did not happen, is dropped)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.unlink(missing_ok=True)


class PauseWatch:
    """How long a domain is paused while a snapshot runs: its state read every 2 ms on a
    thread of its own (libvirt answers a state read without waiting for the domain's job),
    so the figure is the guest's pause, to within that, not the call's duration."""

    def __init__(self, dom: libvirt.virDomain) -> None:
        self.dom = dom
        self.paused_ms = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="pause-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        since: float | None = None
        while not self._done.is_set():
            try:
                state = self.dom.state()[0]
            except libvirt.libvirtError:
                state = libvirt.VIR_DOMAIN_RUNNING
            now = time.monotonic()
            if state == libvirt.VIR_DOMAIN_PAUSED and since is None:
                since = now
            elif state != libvirt.VIR_DOMAIN_PAUSED and since is not None:
                self.paused_ms += (now - since) * 1000
                since = None
            time.sleep(PAUSE_POLL_S)
        if since is not None:
            self.paused_ms += (time.monotonic() - since) * 1000


class LiveDisks(VmCalls):
    async def chains(self, dom: libvirt.virDomain) -> dict[str, list[str]]:
        if not await self._run(dom, "reading the state", dom.isActive):
            raise invalid_state(f"VM {dom.name()} is not running")
        return disk_chains(await self._run(dom, "reading the live XML", dom.XMLDesc, 0))

    async def snapshot(self, dom: libvirt.virDomain, disks: Sequence[DiskOverlay],
                       memory: Path | None = None) -> MemorySaved:
        """The disks' snapshot; with `memory`, the guest's state written there at the same
        instant, and the time the guest was paused measured (its state polled)."""
        chains = await self.chains(dom)
        xml = await self._run(dom, "reading the live XML", dom.XMLDesc, 0)
        actives = {chain[0] for chain in chains.values()}
        pending = [d for d in disks if d.active in actives]
        taken = [d for d in disks if d.active not in actives
                 and any(chain[:2] == [d.overlay, d.active] for chain in chains.values())]
        if len(pending) + len(taken) != len(disks):
            missing = sorted({d.active for d in disks} - {d.active for d in pending + taken})
            raise NodeFailure(ErrorCode.IMAGE_MISSING, f"VM {dom.name()} writes no volume "
                              f"{', '.join(missing)}")
        if not pending:
            return MemorySaved()  # a retry after the snapshot was taken
        for disk in pending:
            if not disk.reuse and exists(disk.overlay):
                raise NodeFailure(ErrorCode.IMAGE_EXISTS, f"volume {disk.overlay} already exists")
        reuse = {disk.reuse for disk in pending}
        if len(reuse) > 1:
            raise NodeFailure(ErrorCode.BAD_REQUEST, "the new volumes of one snapshot are "
                              "either all made beforehand or all made here")
        flags = (_SNAPSHOT_FLAGS if memory is None else _MEMORY_FLAGS) | (
            libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT if True in reuse else 0)
        if memory is None:
            await self._run(dom, "taking a disk snapshot", dom.snapshotCreateXML,
                            snapshot_xml(xml, pending), flags)
            log.info("disk snapshot taken", extra={"vm": dom.name(), "disks": len(pending)})
            return MemorySaved()
        await asyncio.to_thread(_fresh_file, memory)
        watch = PauseWatch(dom)
        watch.start()
        began = time.monotonic()
        try:
            await self._run(dom, "taking a snapshot with memory", dom.snapshotCreateXML,
                            snapshot_xml(xml, pending, memory), flags)
        finally:
            watch.stop()
        total_ms = (time.monotonic() - began) * 1000
        size = (await asyncio.to_thread(memory.stat)).st_size
        log.info("snapshot with memory taken", extra={
            "vm": dom.name(), "disks": len(pending), "pause_ms": round(watch.paused_ms, 1),
            "total_ms": round(total_ms, 1), "memory_bytes": size})
        return MemorySaved(pause_ms=round(watch.paused_ms, 1), total_ms=round(total_ms, 1),
                           memory_bytes=size)

    async def commit(self, dom: libvirt.virDomain, disk: str, top: str, base: str,
                     timeout_s: float) -> None:
        """Block commit `top` into `base`; an active commit ends with a pivot to `base`."""
        target, chain = self._find(await self.chains(dom), disk, base)
        if top not in chain:
            return  # merged already (a retry)
        if chain.index(top) + 1 >= len(chain) or chain[chain.index(top) + 1] != base:
            raise invalid_state(f"{base} is not the volume under {top} in VM {dom.name()}")
        active = chain[0] == top
        flags = libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE if active else 0
        if not await self._run(dom, "reading block jobs", dom.blockJobInfo, target, 0):
            names = dict(_layers(await self._run(dom, "reading the live XML", dom.XMLDesc, 0)
                                 ).get(target, []))
            await self._run(dom, "starting a block commit", dom.blockCommit, target,
                            names.get(base) or base, None if active else names.get(top) or top,
                            0, flags)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            job = await self._run(dom, "reading block jobs", dom.blockJobInfo, target, 0)
            if active and job and job.get("cur") == job.get("end") and await self._pivot(
                    dom, target):
                continue
            if not job:
                break
            if asyncio.get_running_loop().time() > deadline:
                await self._run(dom, "cancelling a block commit", dom.blockJobAbort, target, 0)
                raise NodeFailure(ErrorCode.TIMEOUT, f"merging {top} into {base} took longer "
                                  f"than {timeout_s:g} s; it was cancelled")
            await asyncio.sleep(POLL_S)
        _target, after = self._find(await self.chains(dom), disk, base)
        if top in after:
            raise NodeFailure(ErrorCode.HYPERVISOR_ERROR, f"merging {top} into {base} ended "
                              f"but VM {dom.name()} still uses {top}")
        log.info("volume merged live", extra={"vm": dom.name(), "volume": top, "base": base})

    async def _pivot(self, dom: libvirt.virDomain, target: str) -> bool:
        """Switch to the base once the active commit is ready; False while it is not."""
        try:
            await self.calls.run(dom.blockJobAbort, target,
                                 libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_BLOCK_COPY_ACTIVE or \
                    "not ready" in str(exc) or "not yet" in str(exc):
                return False
            raise node_failure(exc, f"pivoting a disk of VM {dom.name()}") from None
        return True

    def _find(self, chains: dict[str, list[str]], disk: str, base: str
              ) -> tuple[str, list[str]]:
        for target, chain in chains.items():
            if chain[0] in (disk, base):
                return target, chain
        raise NodeFailure(ErrorCode.IMAGE_MISSING, f"no disk of the VM writes {disk}")
