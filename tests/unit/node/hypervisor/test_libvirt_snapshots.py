"""The live XML a disk snapshot and a block commit are built from: each disk's chain as
libvirt shows it, and a snapshot that overlays exactly the disks asked for."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from pydantic import ValidationError

from overt.node.hypervisor.libvirt_snapshots import _layers, disk_chains, snapshot_xml
from overt.protocol.commands import DiskOverlay
from overt.protocol.storage import extent_location, parse_extent_location

LIVE = """<domain type='qemu'><devices>
  <disk type='file' device='disk'>
    <driver name='qemu' type='qcow2'/>
    <source file='/srv/images/top.qcow2'/>
    <backingStore type='file'><format type='qcow2'/><source file='/srv/images/base.qcow2'/>
      <backingStore type='file'><format type='qcow2'/>
        <source file='/srv/templates/guest.qcow2'/><backingStore/></backingStore>
    </backingStore>
    <target dev='vda' bus='virtio'/>
  </disk>
  <disk type='file' device='disk'>
    <source file='/srv/images/data.raw'/><backingStore/>
    <target dev='vdb' bus='virtio'/>
  </disk>
  <disk type='file' device='cdrom'><target dev='sda' bus='sata'/><readonly/></disk>
</devices></domain>"""


def test_each_file_disk_has_its_chain_active_volume_first() -> None:
    assert disk_chains(LIVE) == {
        "vda": ["/srv/images/top.qcow2", "/srv/images/base.qcow2",
                "/srv/templates/guest.qcow2"],
        "vdb": ["/srv/images/data.raw"]}


def test_a_snapshot_overlays_the_disks_asked_for_and_no_other() -> None:
    xml = snapshot_xml(LIVE, [DiskOverlay(active="/srv/images/data.raw",
                                          overlay="/srv/images/new.qcow2")])
    disks = {d.get("name"): d for d in ET.fromstring(xml).findall("disks/disk")}
    assert {name: d.get("snapshot") for name, d in disks.items()} == {
        "vda": "no", "vdb": "external", "sda": "no"}
    source = disks["vdb"].find("source")
    driver = disks["vdb"].find("driver")
    assert source is not None and source.get("file") == "/srv/images/new.qcow2"
    assert driver is not None and driver.get("type") == "qcow2"


# An NFS disk as libvirt 9 shows it live: QEMU's NFS client, layers numbered.
NFS_LIVE = """<domain type='kvm'><devices>
  <disk type='network' device='disk'>
    <driver name='qemu' type='qcow2' cache='none'/>
    <source protocol='nfs' name='/export/sd/images/img/top' index='3'>
      <host name='10.9.9.9'/><identity user='root' group='root'/>
    </source>
    <backingStore type='network' index='2'><format type='qcow2'/>
      <source protocol='nfs' name='/export/sd/images/img/base'><host name='10.9.9.9'/>
        <identity user='root' group='root'/></source><backingStore/></backingStore>
    <target dev='vda' bus='virtio'/>
  </disk>
</devices></domain>"""


def test_an_nfs_disks_chain_is_read_from_its_network_sources() -> None:
    assert disk_chains(NFS_LIVE) == {
        "vda": ["/export/sd/images/img/top", "/export/sd/images/img/base"]}
    # libvirt finds a network layer by its number, not by its path
    assert _layers(NFS_LIVE)["vda"] == [("/export/sd/images/img/top", "vda[3]"),
                                        ("/export/sd/images/img/base", "vda[2]")]
    assert all(ref is None for _name, ref in _layers(LIVE)["vda"])  # files keep their paths


def test_an_nfs_disks_overlay_is_reached_as_its_active_volume_is() -> None:
    xml = snapshot_xml(NFS_LIVE, [DiskOverlay(active="/export/sd/images/img/top",
                                              overlay="/export/sd/images/img/new", reuse=True)])
    [disk] = ET.fromstring(xml).findall("disks/disk")
    assert (disk.get("name"), disk.get("snapshot"), disk.get("type")) == (
        "vda", "external", "network")
    source = disk.find("source")
    assert source is not None
    assert (source.get("protocol"), source.get("name")) == ("nfs", "/export/sd/images/img/new")
    host, identity = source.find("host"), source.find("identity")
    assert host is not None and host.get("name") == "10.9.9.9"
    assert identity is not None and identity.get("user") == "root"


def test_a_volume_path_with_parent_steps_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"\.\."):
        DiskOverlay(active="/export/sd/images/img/top", overlay="/export/../etc/x", reuse=True)


# An iSCSI domain's disk as libvirt 9 shows it live: each volume a slice of the LUN,
# reached through QEMU's iSCSI client with CHAP; a direct LUN disk (no slice) besides.
ISCSI_LIVE = """<domain type='qemu'><devices>
  <disk type='network' device='disk'>
    <driver name='qemu' type='qcow2' cache='none'/>
    <source protocol='iscsi' name='iqn.2026-11.org.overt:lab/1' index='3'>
      <host name='10.9.9.9' port='3260'/>
      <auth username='init1'><secret type='iscsi' usage='overtchap1'/></auth>
      <slices><slice type='storage' offset='40894464' size='13631488'/></slices>
    </source>
    <backingStore type='network' index='2'><format type='qcow2'/>
      <source protocol='iscsi' name='iqn.2026-11.org.overt:lab/1'>
        <host name='10.9.9.9' port='3260'/>
        <slices><slice type='storage' offset='3145728' size='37748736'/></slices>
      </source><backingStore/></backingStore>
    <target dev='vda' bus='virtio'/>
  </disk>
  <disk type='network' device='disk'>
    <driver name='qemu' type='raw' cache='none'/>
    <source protocol='iscsi' name='iqn.2026-11.org.overt:lab/2' index='1'>
      <host name='10.9.9.9' port='3260'/>
    </source>
    <target dev='vdb' bus='virtio'/>
  </disk>
</devices></domain>"""
IQN = "iqn.2026-11.org.overt:lab"


def test_an_iscsi_disks_chain_names_each_volume_by_its_lun_and_slice() -> None:
    top, base = extent_location(IQN, 1, 40894464, 13631488), extent_location(
        IQN, 1, 3145728, 37748736)
    assert top == f"/{IQN}/1/40894464/13631488"
    assert parse_extent_location(top) == (IQN, 1, 40894464, 13631488)
    assert parse_extent_location("/export/sd/images/img/top") is None
    assert disk_chains(ISCSI_LIVE) == {"vda": [top, base]}  # a whole LUN is no volume
    assert _layers(ISCSI_LIVE)["vda"] == [(top, "vda[3]"), (base, "vda[2]")]


def test_an_iscsi_disks_overlay_is_a_new_slice_of_the_lun_reached_as_the_active_one() -> None:
    active = extent_location(IQN, 1, 40894464, 13631488)
    overlay = extent_location(IQN, 1, 54525952, 13631488)
    xml = snapshot_xml(ISCSI_LIVE, [DiskOverlay(active=active, overlay=overlay, reuse=True)])
    disks = {d.get("name"): d for d in ET.fromstring(xml).findall("disks/disk")}
    assert {name: d.get("snapshot") for name, d in disks.items()} == {
        "vda": "external", "vdb": "no"}
    disk = disks["vda"]
    assert disk.get("type") == "network"
    driver, source = disk.find("driver"), disk.find("source")
    assert driver is not None and driver.get("type") == "qcow2"
    assert source is not None
    assert (source.get("protocol"), source.get("name")) == ("iscsi", f"{IQN}/1")
    host, secret = source.find("host"), source.find("auth/secret")
    assert host is not None and (host.get("name"), host.get("port")) == ("10.9.9.9", "3260")
    assert secret is not None and secret.get("usage") == "overtchap1"
    [piece] = source.findall("slices/slice")
    assert piece.attrib == {"type": "storage", "offset": "54525952", "size": "13631488"}
