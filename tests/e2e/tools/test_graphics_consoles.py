"""A VM's graphics console through the official SDK, as oVirt's own tools ask for it: the
console, its ticket, and the remote-viewer connection file (.vv) that opens it."""

from __future__ import annotations

import configparser
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import libvirt
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from overt.system.daemons import LOCAL_LIBVIRT_URI
from tests.support.demo import Demo

pytestmark = [pytest.mark.vm, pytest.mark.slow]


def vnc_graphics(vm_id: str) -> ET.Element:
    xml = libvirt.open(LOCAL_LIBVIRT_URI).lookupByUUIDString(vm_id).XMLDesc(
        libvirt.VIR_DOMAIN_XML_SECURE)
    graphics = ET.fromstring(xml).find("devices/graphics[@type='vnc']")
    assert graphics is not None
    return graphics


def test_the_console_its_ticket_and_its_connection_file(demo: Demo,
                                                        running_vm: types.Vm) -> None:
    conn = demo.connect()
    try:
        vm_service = conn.system_service().vms_service().vm_service(running_vm.id)
        [console] = vm_service.graphics_consoles_service().list()
        assert console.protocol == types.GraphicsType.VNC and console.id == "766e63"
        graphics = vnc_graphics(running_vm.id)
        assert console.port == int(graphics.get("port", "0")) > 0
        assert running_vm.display.port == console.port

        console_service = vm_service.graphics_consoles_service().console_service(console.id)
        assert console_service.get().address == running_vm.display.address
        ticket = console_service.ticket(ticket=types.Ticket(value="s3cret", expiry=300))
        assert (ticket.value, ticket.expiry) == ("s3cret", 300)
        assert vnc_graphics(running_vm.id).get("passwd") == "s3cret"

        text = console_service.remote_viewer_connection_file()
        vv = configparser.ConfigParser(interpolation=None)
        vv.read_string(text)
        viewer = vv["virt-viewer"]
        assert (viewer["type"], viewer["host"], viewer["port"]) == (
            "vnc", console.address, str(console.port))
        assert viewer["password"] == vnc_graphics(running_vm.id).get("passwd")
        assert viewer["delete-this-file"] == "1"
        ovirt = vv["ovirt"]
        assert ovirt["vm-guid"] == running_vm.id
        assert ovirt["host"] == urlsplit(demo.url).netloc
        assert ovirt["ca"].replace("\\n", "\n") == demo.ca_file.read_text()
        assert ovirt["sso-token"]

        with pytest.raises(sdk.NotFoundError):
            vm_service.graphics_consoles_service().console_service("7370696365").get()
    finally:
        conn.close()


def test_reported_devices_name_the_vms_nics(demo: Demo, running_vm: types.Vm) -> None:
    conn = demo.connect()
    try:
        vm_service = conn.system_service().vms_service().vm_service(running_vm.id)
        nics = vm_service.nics_service().list()
        devices = vm_service.reported_devices_service().list()
        assert [d.name for d in devices] == ["nic1"]
        assert sorted((d.name, d.mac.address) for d in devices) == sorted(
            (n.name, n.mac.address) for n in nics)
        assert vm_service.numa_nodes_service().list() == []
        assert vm_service.watchdogs_service().list() == []
    finally:
        conn.close()
