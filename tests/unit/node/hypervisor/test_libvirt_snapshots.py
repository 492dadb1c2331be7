"""The live XML a disk snapshot and a block commit are built from: each disk's chain as
libvirt shows it, and a snapshot that overlays exactly the disks asked for."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from overt.node.hypervisor.libvirt_snapshots import disk_chains, snapshot_xml
from overt.protocol.commands import DiskOverlay

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
