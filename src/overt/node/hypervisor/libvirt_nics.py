"""Hot-plug, unplug and link state of a running domain's NICs over libvirt.

NICs are found by MAC address in the live XML, so a retried command sees what the first
attempt did. Changes go to the live domain and, when it is persistent, to its definition.
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET

import libvirt

from overt.node.errors import invalid_state
from overt.node.hypervisor.domain_xml import nic_xml, parse_libvirt_xml
from overt.node.hypervisor.libvirt_errors import VmCalls
from overt.node.ovs_ports import ovs_bridges
from overt.protocol.vm import NicSpec

log = logging.getLogger(__name__)
UNPLUG_WAIT_S = 30.0  # the guest acknowledges a PCI unplug; libvirt returns before that
POLL_S = 0.2


class LiveNics(VmCalls):
    async def _flags(self, dom: libvirt.virDomain) -> int:
        persistent = bool(await self._run(dom, "reading the VM's definition", dom.isPersistent))
        live: int = libvirt.VIR_DOMAIN_AFFECT_LIVE
        config: int = libvirt.VIR_DOMAIN_AFFECT_CONFIG
        return live | config if persistent else live

    async def find(self, dom: libvirt.virDomain, mac: str) -> ET.Element | None:
        xml = await self._run(dom, "reading the live XML", dom.XMLDesc, 0)
        for interface in parse_libvirt_xml(xml).findall("devices/interface"):
            found = interface.find("mac")
            if found is not None and found.get("address", "").lower() == mac.lower():
                return interface
        return None

    async def _require_running(self, dom: libvirt.virDomain) -> None:
        if not await self._run(dom, "reading the state", dom.isActive):
            raise invalid_state(f"VM {dom.name()} is not running")

    async def plug(self, dom: libvirt.virDomain, nic: NicSpec) -> None:
        await self._require_running(dom)
        if await self.find(dom, nic.mac) is not None:
            return
        await self._run(dom, f"plugging NIC {nic.name} into", dom.attachDeviceFlags,
                        nic_xml(nic, ovs=bool(await asyncio.to_thread(
                            ovs_bridges, [nic.bridge] if nic.vlan is None else []))),
                        await self._flags(dom))
        log.info("NIC plugged", extra={"vm": dom.name(), "nic": nic.name})

    async def unplug(self, dom: libvirt.virDomain, nic: NicSpec) -> None:
        await self._require_running(dom)
        current = await self.find(dom, nic.mac)
        if current is None:
            return
        await self._run(dom, f"unplugging NIC {nic.name} from", dom.detachDeviceFlags,
                        ET.tostring(current, encoding="unicode"), await self._flags(dom))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + UNPLUG_WAIT_S
        while await self.find(dom, nic.mac) is not None:
            if loop.time() > deadline:
                raise invalid_state(f"the guest of VM {dom.name()} did not release NIC "
                                    f"{nic.name} within {UNPLUG_WAIT_S:.0f} s")
            await asyncio.sleep(POLL_S)
        log.info("NIC unplugged", extra={"vm": dom.name(), "nic": nic.name})

    async def set_link(self, dom: libvirt.virDomain, nic: NicSpec) -> None:
        await self._require_running(dom)
        current = await self.find(dom, nic.mac)
        if current is None:
            raise invalid_state(f"VM {dom.name()} has no plugged NIC {nic.name} ({nic.mac})")
        link = current.find("link")
        if link is None:
            link = ET.SubElement(current, "link")
        link.set("state", "up" if nic.linked else "down")
        await self._run(dom, f"setting the link of NIC {nic.name}", dom.updateDeviceFlags,
                        ET.tostring(current, encoding="unicode"), await self._flags(dom))
        log.info("NIC link set", extra={"vm": dom.name(), "nic": nic.name,
                                         "linked": nic.linked})
