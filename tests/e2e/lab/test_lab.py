"""The lab as a user gets it from `overt lab up --nodes 2`."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from overt.lab.guest import BOOT_MARKER, GuestImage
from overt.lab.guest.domain import overlay_disk
from overt.lab.lab import Lab
from overt.lab.topology import Net
from tests.conftest import TEST_LAB
from tests.support.cli import overt
from tests.support.domains import GuestDomain, wait_for_text

pytestmark = pytest.mark.lab


def on_host(
    lab: Lab, host: str, *argv: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(lab.exec_argv(host, list(argv)), capture_output=True, text=True,
                          timeout=timeout, check=False)


def address(lab: Lab, host: str, net: Net) -> str:
    return str(lab.topology.host(host).address(net))


@pytest.mark.parametrize("net", [Net.MANAGEMENT, Net.STORAGE])
def test_nodes_ping_each_other(lab: Lab, net: Net) -> None:
    result = on_host(lab, "node1", "ping", "-c", "1", "-W", "2", address(lab, "node2", net))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 received" in result.stdout


def test_each_node_has_its_own_libvirtd_and_host_uuid(lab: Lab) -> None:
    uuids = []
    for node in lab.topology.nodes:
        conn = libvirt.open(lab.hypervisor(node.name).uri)
        try:
            caps = ET.fromstring(conn.getCapabilities())
        finally:
            conn.close()
        uuids.append(caps.findtext("host/uuid"))
        assert uuids[-1] == str(node.host_uuid)
    assert len(set(uuids)) == len(uuids)


def test_node_reaches_nfs_on_the_storage_network(lab: Lab) -> None:
    url = f"nfs://{address(lab, 'storage', Net.STORAGE)}/export/probe.qcow2"
    created = on_host(lab, "node1", "qemu-img", "create", "-f", "qcow2", url, "16M")
    assert created.returncode == 0, created.stderr
    info = on_host(lab, "node1", "qemu-img", "info", url)
    assert info.returncode == 0, info.stderr
    assert "file format: qcow2" in info.stdout
    assert (lab.topology.nfs_export_dir() / "probe.qcow2").exists()


def test_node_reaches_iscsi_on_the_storage_network(lab: Lab) -> None:
    url = lab.storage_server().iscsi_url(1)
    info = on_host(lab, "node1", "qemu-img", "info", url)
    assert info.returncode == 0, info.stderr
    assert "virtual size: 2 GiB" in info.stdout


def test_storage_is_not_served_on_the_management_network(lab: Lab) -> None:
    storage_mgmt = address(lab, "storage", Net.MANAGEMENT)
    ping = on_host(lab, "node1", "ping", "-c", "1", "-W", "2", storage_mgmt)
    assert ping.returncode == 0, "the storage host should be on the management network"
    for port in (2049, 3260):
        probe = on_host(lab, "node1", "timeout", "3", "bash", "-c",
                        f"exec 3<>/dev/tcp/{storage_mgmt}/{port}")
        assert probe.returncode != 0, f"port {port} answers on the management network"
    nfs = on_host(lab, "node1", "qemu-img", "info", f"nfs://{storage_mgmt}/export/probe.qcow2")
    assert nfs.returncode != 0


def test_engine_side_is_on_management_but_not_storage(lab: Lab) -> None:
    mgmt = subprocess.run(["ping", "-c", "1", "-W", "2", address(lab, "node1", Net.MANAGEMENT)],
                          capture_output=True, check=False)
    assert mgmt.returncode == 0
    storage = subprocess.run(["ping", "-c", "1", "-W", "1", address(lab, "node1", Net.STORAGE)],
                             capture_output=True, check=False)
    assert storage.returncode != 0


def test_a_node_runs_the_test_guest(lab: Lab, guest_image: GuestImage, vm_dir: Path) -> None:
    spec = GuestDomain(disk=vm_dir / "disk.qcow2", serial_log=vm_dir / "serial.log",
                       bridge="ovirtmgmt")
    overlay_disk(guest_image.qcow2_disk, spec.disk)
    conn = libvirt.open(lab.hypervisor("node1").uri)
    try:
        domain = conn.createXML(spec.xml(), 0)
        try:
            wait_for_text(spec.serial_log, BOOT_MARKER, timeout=20)
            assert spec.name in on_host(lab, "node1", "virsh", "list", "--name").stdout
            assert spec.name not in on_host(lab, "node2", "virsh", "list", "--name").stdout
        finally:
            domain.destroy()
    finally:
        conn.close()


def test_guest_network_gives_the_test_guest_an_address_by_dhcp(
    lab: Lab, local_libvirt: libvirt.virConnect, guest_image: GuestImage, vm_dir: Path
) -> None:
    mac = "52:54:00:0a:d3:01"
    spec = GuestDomain(disk=vm_dir / "disk.qcow2", serial_log=vm_dir / "serial.log",
                       bridge=lab.topology.bridge(Net.GUEST), mac=mac)
    overlay_disk(guest_image.qcow2_disk, spec.disk)
    domain = local_libvirt.createXML(spec.xml(), 0)
    try:
        wait_for_text(spec.serial_log, "eth0 has address", timeout=40)
        leased = lab.guest_dhcp().leases()[mac]
        assert f"eth0 has address {leased}" in spec.serial_log.read_text()
        ping = subprocess.run(["ping", "-c", "1", "-W", "2", leased], capture_output=True,
                              text=True, check=False)
        assert ping.returncode == 0, ping.stdout
    finally:
        domain.destroy()


def test_status_reports_every_host_running(lab: Lab) -> None:
    result = overt("lab", "status", "--json", "--prefix", TEST_LAB.prefix)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert [h["name"] for h in status["hosts"]] == ["storage", "node1", "node2"]
    assert all(h["running"] for h in status["hosts"])


def test_exec_runs_the_command_on_the_host_and_keeps_its_exit_code(lab: Lab) -> None:
    shown = overt("lab", "exec", "node2", "--prefix", TEST_LAB.prefix, "--",
                  "ip", "-4", "-o", "addr", "show", "ovirtmgmt")
    assert shown.returncode == 0, shown.stderr
    assert address(lab, "node2", Net.MANAGEMENT) in shown.stdout
    failing = overt("lab", "exec", "node1", "--prefix", TEST_LAB.prefix, "--", "false")
    assert failing.returncode == 1


def test_second_up_with_the_same_settings_keeps_the_lab(lab: Lab) -> None:
    before = {h.name: h.anchor for h in lab.status()}
    result = overt("lab", "up", "--nodes", "2", "--prefix", TEST_LAB.prefix,
                   "--address-block", TEST_LAB.address_block)
    assert result.returncode == 0, result.stderr
    assert {h.name: h.anchor for h in lab.status()} == before


def test_second_up_with_other_settings_is_refused_and_changes_nothing(lab: Lab) -> None:
    before = lab.status()
    result = overt("lab", "up", "--nodes", "3", "--prefix", TEST_LAB.prefix,
                   "--address-block", TEST_LAB.address_block)
    assert result.returncode == 1
    assert "already up with 2 node(s)" in result.stderr
    assert "Traceback" not in result.stderr
    assert lab.status() == before
