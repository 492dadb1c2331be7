"""Live storage migration of a running domain's disk over libvirt: a block copy
(virDomainBlockCopy) into a volume the engine made beforehand on the target domain
(REUSE_EXT), then a pivot once the mirror is ready, or an abort that leaves the VM on
its volume.

The disk is found by its device alias (`ua-<disk id>`); which volume it writes, and the
mirror's destination, are read from the live XML each time, so every action is safe to
repeat and an engine that took the job over after a crash learns where it stands. Overt
starts VMs as transient domains; a persistent one gets a transient job (the flag libvirt
requires) and, once pivoted, its definition is pointed at the new volume too.
"""

from __future__ import annotations

import copy
import logging
import uuid
import xml.etree.ElementTree as ET

import libvirt

from overt.node.errors import NodeFailure, invalid_state
from overt.node.hypervisor.domain_xml import mirror_xml, parse_libvirt_xml
from overt.node.hypervisor.libvirt_errors import VmCalls
from overt.node.hypervisor.libvirt_snapshots import _layer_name
from overt.protocol import ErrorCode
from overt.protocol.commands import BlockCopyState
from overt.protocol.vm import DiskFormat, DiskSource

log = logging.getLogger(__name__)


def destination_name(destination: DiskSource) -> str:
    """The destination as the live XML names a layer (`libvirt_snapshots._layer_name`)."""
    source = parse_libvirt_xml(mirror_xml(destination, DiskFormat.RAW)).find("source")
    name = _layer_name(source)
    if name is None:
        raise NodeFailure(ErrorCode.BAD_REQUEST, "a block copy goes to a volume (a file, an "
                          "NFS volume or an extent of a LUN), not a whole LUN")
    return name


def disk_device(xml: str, disk_id: uuid.UUID) -> ET.Element:
    """The live `<disk>` whose alias is the disk's."""
    for disk in parse_libvirt_xml(xml).findall("devices/disk"):
        alias = disk.find("alias")
        if alias is not None and alias.get("name") == f"ua-{disk_id}":
            return disk
    raise NodeFailure(ErrorCode.IMAGE_MISSING, f"the VM has no disk {disk_id}")


class BlockCopies(VmCalls):
    async def _device(self, dom: libvirt.virDomain, disk_id: uuid.UUID) -> ET.Element:
        if not await self._run(dom, "reading the state", dom.isActive):
            raise invalid_state(f"VM {dom.name()} is not running")
        return disk_device(await self._run(dom, "reading the live XML", dom.XMLDesc, 0),
                           disk_id)

    async def state(self, dom: libvirt.virDomain, disk_id: uuid.UUID,
                    destination: DiskSource) -> BlockCopyState:
        device = await self._device(dom, disk_id)
        wanted = destination_name(destination)
        if _layer_name(device.find("source")) == wanted:
            return BlockCopyState(on_destination=True)
        target = _target(device)
        job = await self._run(dom, "reading block jobs", dom.blockJobInfo, target, 0)
        if not job:
            return BlockCopyState(on_destination=False)
        mirror = device.find("mirror")
        if mirror is None or _layer_name(mirror.find("source")) != wanted:
            raise invalid_state(f"disk {disk_id} of VM {dom.name()} is busy with another "
                                "block job")
        cur, end = int(job.get("cur", 0)), int(job.get("end", 0))
        ready = mirror.get("ready") == "yes"
        return BlockCopyState(on_destination=False, job="ready" if ready else "copying",
                              copied=cur, total=end)

    async def start(self, dom: libvirt.virDomain, disk_id: uuid.UUID, destination: DiskSource,
                    fmt: DiskFormat) -> BlockCopyState:
        now = await self.state(dom, disk_id, destination)
        if now.on_destination or now.job != "none":
            return now  # a retry: moved already, or mirroring
        target = _target(await self._device(dom, disk_id))
        persistent = await self._run(dom, "reading the persistence", dom.isPersistent)
        flags = libvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT
        if persistent:
            flags |= libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB
        await self._run(dom, "starting a block copy", dom.blockCopy, target,
                        mirror_xml(destination, fmt), None, flags)
        log.info("block copy started", extra={"vm": dom.name(), "disk": str(disk_id)})
        return await self.state(dom, disk_id, destination)

    async def pivot(self, dom: libvirt.virDomain, disk_id: uuid.UUID,
                    destination: DiskSource) -> BlockCopyState:
        now = await self.state(dom, disk_id, destination)
        if now.on_destination:
            return now
        if now.job != "ready":
            raise invalid_state(f"the block copy of disk {disk_id} of VM {dom.name()} is "
                                f"{'not running' if now.job == 'none' else 'not ready'}")
        target = _target(await self._device(dom, disk_id))
        await self._run(dom, "pivoting a block copy", dom.blockJobAbort, target,
                        libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
        after = await self.state(dom, disk_id, destination)
        if not after.on_destination:
            raise NodeFailure(ErrorCode.HYPERVISOR_ERROR, f"disk {disk_id} of VM {dom.name()} "
                              "does not write the destination after the pivot")
        if await self._run(dom, "reading the persistence", dom.isPersistent):
            await self._define_pivoted(dom, disk_id)
        log.info("block copy pivoted", extra={"vm": dom.name(), "disk": str(disk_id)})
        return after

    async def abort(self, dom: libvirt.virDomain, disk_id: uuid.UUID,
                    destination: DiskSource) -> BlockCopyState:
        now = await self.state(dom, disk_id, destination)
        if now.on_destination or now.job == "none":
            return now
        target = _target(await self._device(dom, disk_id))
        await self._run(dom, "cancelling a block copy", dom.blockJobAbort, target, 0)
        log.info("block copy cancelled", extra={"vm": dom.name(), "disk": str(disk_id)})
        return await self.state(dom, disk_id, destination)

    async def _define_pivoted(self, dom: libvirt.virDomain, disk_id: uuid.UUID) -> None:
        """A persistent domain's definition follows the pivot (its next start)."""
        live = copy.deepcopy(await self._device(dom, disk_id))
        for child in list(live):
            if child.tag in ("mirror", "backingStore"):
                live.remove(child)
        source = live.find("source")
        if source is not None:
            source.attrib.pop("index", None)
        await self._run(dom, "updating the definition", dom.updateDeviceFlags,
                        ET.tostring(live, encoding="unicode"),
                        libvirt.VIR_DOMAIN_AFFECT_CONFIG)


def _target(device: ET.Element) -> str:
    found = device.find("target")
    if found is None or not found.get("dev"):
        raise NodeFailure(ErrorCode.HYPERVISOR_ERROR, "a disk of the live XML has no target")
    return found.get("dev", "")
