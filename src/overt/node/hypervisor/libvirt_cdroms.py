"""Changing the media in a running domain's cdrom drive over libvirt (update-device).

The drive is found by its alias in the live XML; a retried change that finds the asked
media already in the drive does nothing. The change goes to the live domain and, when it
is persistent, to its definition.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

import libvirt

from overt.node.errors import invalid_state
from overt.node.hypervisor.domain_xml import CDROM_ALIAS, cdrom_xml, parse_libvirt_xml
from overt.node.hypervisor.executor import BlockingCalls
from overt.node.hypervisor.libvirt_errors import node_failure
from overt.protocol.vm import CdromSpec

log = logging.getLogger(__name__)


def _media(element: ET.Element) -> tuple[str, str] | None:
    """What is in a cdrom drive: (file or protocol, path), None when the tray is empty."""
    source = element.find("source")
    if source is None:
        return None
    if source.get("file"):
        return "file", source.get("file", "")
    if source.get("name"):
        return source.get("protocol", ""), source.get("name", "")
    return None


class LiveCdrom:
    def __init__(self, calls: BlockingCalls) -> None:
        self.calls = calls

    async def change(self, dom: libvirt.virDomain, cdrom: CdromSpec) -> None:
        try:
            if not await self.calls.run(dom.isActive):
                raise invalid_state(f"VM {dom.name()} is not running")
            xml = await self.calls.run(dom.XMLDesc, 0)
            drive = parse_libvirt_xml(xml).find(
                f"devices/disk[@device='cdrom']/alias[@name='{CDROM_ALIAS}']/..")
            if drive is None:
                raise invalid_state(f"VM {dom.name()} has no cdrom drive (it was started "
                                    "without one); restart it to get one")
            wanted = ET.fromstring(cdrom_xml(cdrom))  # noqa: S314 - our own XML
            if _media(drive) == _media(wanted):
                return
            # Forced, as VDSM does: a guest that holds the tray locked (a mounted or open
            # drive) would otherwise keep the old media and the change would time out.
            flags = libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE
            if await self.calls.run(dom.isPersistent):
                flags |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
            # The drive's own target, as libvirt matches the device by it.
            target, wanted_target = drive.find("target"), wanted.find("target")
            if target is not None and wanted_target is not None:
                wanted_target.attrib = dict(target.attrib)
            await self.calls.run(dom.updateDeviceFlags, ET.tostring(wanted, encoding="unicode"),
                                 flags)
        except libvirt.libvirtError as exc:
            raise node_failure(exc, f"changing the cdrom of VM {dom.name()}") from None
        log.info("cdrom changed", extra={"vm": dom.name(),
                                          "media": "none" if cdrom.source is None else "iso"})
