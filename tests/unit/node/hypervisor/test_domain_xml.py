"""Domain XML from VM specs, checked against golden files (tests/.../golden/*.xml).

To accept a deliberate change: OVERT_UPDATE_GOLDEN=1 pytest tests/unit/node, then review
the diff of the golden files.
"""

from __future__ import annotations

import os
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from overt.node.hypervisor.domain_xml import (
    CDROM_ALIAS,
    OvertMetadata,
    cdrom_xml,
    domain_xml,
    nic_xml,
    vnc_port,
    with_display_address,
)
from overt.node.storage.chap import iscsi_credentials
from overt.node.storage.chap import secret_id as chap_secret_id
from overt.protocol.host import VirtMode
from overt.protocol.vm import (
    BackingLayer,
    BiosType,
    BootDevice,
    CdromSpec,
    ChapAuth,
    CpuTopology,
    DiskBus,
    DiskFormat,
    DiskSpec,
    FileSource,
    GraphicsSpec,
    IscsiSource,
    NfsSource,
    NicSpec,
    VmSpec,
)

GOLDEN = Path(__file__).parent / "golden"
VM_ID = uuid.UUID("11111111-2222-4333-8444-555555555555")


def _id(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


SPECS = {
    "minimal": VmSpec(id=VM_ID, name="tiny", memory_mib=64, graphics=None),
    "web": VmSpec(
        id=VM_ID, name="web-1", memory_mib=2048,
        cpu=CpuTopology(sockets=2, cores=2, threads=2),
        boot=(BootDevice.HD, BootDevice.NETWORK),
        disks=(DiskSpec(id=_id(1), source=FileSource(path="/var/lib/overt/images/web.qcow2"),
                        bootable=True, serial="web-root"),
               DiskSpec(id=_id(2), source=FileSource(path="/var/lib/overt/images/data.raw"),
                        format=DiskFormat.RAW, readonly=True)),
        nics=(NicSpec(id=_id(3), mac="56:6F:1A:00:00:01", bridge="ovirtmgmt"),
              NicSpec(id=_id(4), name="nic2", mac="56:6f:1a:00:00:02", bridge="guest",
                      model="e1000", linked=False)),
        graphics=GraphicsSpec(password="s3cret"),
        serial_log="/var/log/overt/web-1.serial.log", spec_version=7),
    "network-disks": VmSpec(
        id=VM_ID, name="db", memory_mib=1024,
        disks=(DiskSpec(id=_id(5), source=NfsSource(server="10.77.1.10",
                                                    path="/export/sd1/db.qcow2")),
               DiskSpec(id=_id(6), bus=DiskBus.SCSI, format=DiskFormat.RAW,
                        source=IscsiSource(portal="10.77.1.10:3260",
                                           target="iqn.2024-01.dev.overt:sd1", lun=1)),
               DiskSpec(id=_id(7), bus=DiskBus.SCSI, source=FileSource(path="/a/b.qcow2"))),
        graphics=GraphicsSpec()),
    # A thin copy of a template's disk on NFS: its backing is given, not probed.
    "thin-on-nfs": VmSpec(
        id=VM_ID, name="thin", memory_mib=256,
        disks=(DiskSpec(id=_id(8), source=NfsSource(server="10.77.1.10",
                                                    path="/export/sd1/images/i8/v8"),
                        backing=NfsSource(server="10.77.1.10",
                                          path="/export/sd1/images/i9/v9"),
                        bootable=True),),
        graphics=None),
    # An installer: boots from an ISO on an NFS domain (QEMU's own NFS client), then its disk.
    "cdrom-on-nfs": VmSpec(
        id=VM_ID, name="installer", memory_mib=512, boot=(BootDevice.CDROM, BootDevice.HD),
        disks=(DiskSpec(id=_id(10), source=FileSource(path="/var/lib/overt/images/i.qcow2")),),
        cdrom=CdromSpec(source=NfsSource(server="10.77.1.10",
                                         path="/export/sd1/images/i11/v11")),
        graphics=None),
    # A UEFI guest (OVMF) booting from the network, with an empty cdrom on q35's SATA.
    "uefi-network": VmSpec(
        id=VM_ID, name="uefi", memory_mib=256, bios=BiosType.Q35_OVMF,
        boot=(BootDevice.NETWORK, BootDevice.HD),
        disks=(DiskSpec(id=_id(12), source=FileSource(path="/var/lib/overt/images/u.qcow2")),),
        nics=(NicSpec(id=_id(13), mac="56:6f:1a:00:00:03", bridge="guest"),),
        cdrom=CdromSpec(), graphics=None),
    "secure-boot": VmSpec(id=VM_ID, name="secure", memory_mib=256,
                          bios=BiosType.Q35_SECURE_BOOT, graphics=None),
}


@pytest.mark.parametrize(("name", "mode"), [("minimal", VirtMode.QEMU), ("web", VirtMode.KVM),
                                            ("network-disks", VirtMode.QEMU),
                                            ("thin-on-nfs", VirtMode.QEMU),
                                            ("cdrom-on-nfs", VirtMode.QEMU),
                                            ("uefi-network", VirtMode.QEMU),
                                            ("secure-boot", VirtMode.QEMU)])
def test_domain_xml_matches_its_golden_file(name: str, mode: VirtMode) -> None:
    spec = SPECS[name]
    xml = domain_xml(spec, mode, OvertMetadata(spec.id, spec.spec_version, "job-1/step-2"))
    golden = GOLDEN / f"{name}.xml"
    if os.environ.get("OVERT_UPDATE_GOLDEN"):
        golden.write_text(xml + "\n")
    assert xml + "\n" == golden.read_text()


@pytest.mark.parametrize("bios", list(BiosType))
def test_each_bios_type_gets_its_machine_and_a_firmware_that_exists(bios: BiosType) -> None:
    """The firmware files named are Debian's `ovmf`'s, installed here (scripts/setup)."""
    spec = SPECS["minimal"].model_copy(update={"bios": bios, "config_drive": None})
    dom = ET.fromstring(domain_xml(spec, VirtMode.QEMU, OvertMetadata(VM_ID, 1),
                                   config_drive=Path("/run/overt/cidata.iso")))
    machine = dom.find("os/type").get("machine")  # type: ignore[union-attr]
    assert machine == ("pc" if bios is BiosType.I440FX_SEA_BIOS else "q35")
    loader, nvram = dom.find("os/loader"), dom.find("os/nvram")
    uefi = bios in (BiosType.Q35_OVMF, BiosType.Q35_SECURE_BOOT)
    assert (loader is not None, nvram is not None) == (uefi, uefi)
    if loader is not None and nvram is not None:
        assert Path(loader.text or "").is_file() and Path(nvram.get("template", "")).is_file()
        assert loader.get("readonly") == "yes" and loader.get("type") == "pflash"
    secure = bios is BiosType.Q35_SECURE_BOOT
    assert (dom.find("features/smm") is not None) == secure
    assert (loader is not None and loader.get("secure") == "yes") == secure
    (drive,) = dom.findall("devices/disk[@device='cdrom']")
    assert drive.find("target").get("bus") == ("ide" if machine == "pc" else "sata")  # type: ignore[union-attr]


def test_metadata_is_read_back_from_the_domain() -> None:
    spec = SPECS["web"]
    meta = OvertMetadata(spec.id, spec.spec_version, "job-1")
    assert OvertMetadata.parse(domain_xml(spec, VirtMode.QEMU, meta)) == meta
    assert OvertMetadata.parse(meta.xml()) == meta


def test_a_domain_without_overt_metadata_is_external() -> None:
    assert OvertMetadata.parse("<domain type='kvm'><name>x</name></domain>") is None
    assert OvertMetadata.parse("<domain><metadata><other xmlns='urn:x'/></metadata></domain>") \
        is None


def test_names_with_markup_stay_text() -> None:
    spec = SPECS["web"].model_copy(update={
        "disks": (DiskSpec(id=_id(1), source=FileSource(path="/x/<evil>&'\".qcow2")),)})
    xml = domain_xml(spec, VirtMode.QEMU, OvertMetadata(spec.id, 1))
    assert "/x/&lt;evil&gt;&amp;'&quot;.qcow2" in xml


def test_many_disks_get_libvirt_drive_names() -> None:
    disks = tuple(DiskSpec(id=_id(i + 10), source=FileSource(path=f"/d/{i}.qcow2"))
                  for i in range(28))
    xml = domain_xml(SPECS["minimal"].model_copy(update={"disks": disks}), VirtMode.QEMU,
                     OvertMetadata(VM_ID, 1))
    assert 'dev="vdz"' in xml and 'dev="vdaa"' in xml and 'dev="vdab"' in xml


def test_vnc_port_of_a_live_domain() -> None:
    live = "<domain><devices><graphics type='vnc' port='5901'/></devices></domain>"
    assert vnc_port(live) == 5901
    assert vnc_port("<domain><devices><graphics type='vnc' port='-1'/></devices></domain>") \
        is None
    assert vnc_port("<domain><devices/></domain>") is None


def test_a_nic_on_a_vlan_network_is_an_ovs_access_port() -> None:
    """libvirt plugs it into the network's OVS bridge with the network's tag; an untagged
    network stays a plain Linux bridge port."""
    nics = (NicSpec(id=_id(30), mac="56:6f:1a:00:00:30", bridge="vlan100", vlan=100),
            NicSpec(id=_id(31), name="nic2", mac="56:6f:1a:00:00:31", bridge="ovirtmgmt"))
    spec = SPECS["minimal"].model_copy(update={"nics": nics})
    root = ET.fromstring(domain_xml(spec, VirtMode.QEMU, OvertMetadata(spec.id, 1)))
    tagged, plain = root.findall("./devices/interface")
    assert tagged.get("type") == "bridge"
    assert tagged.find("source").get("bridge") == "vlan100"  # type: ignore[union-attr]
    assert tagged.find("virtualport").get("type") == "openvswitch"  # type: ignore[union-attr]
    assert [t.get("id") for t in tagged.findall("./vlan/tag")] == ["100"]
    assert plain.find("virtualport") is None and plain.find("vlan") is None
    assert plain.find("source").get("bridge") == "ovirtmgmt"  # type: ignore[union-attr]


def test_a_nic_on_an_untagged_network_carried_by_a_bond_is_an_untagged_ovs_port() -> None:
    """On a bond the untagged network's bridge is an OVS fake bridge on VLAN 0: the NIC is
    an OVS port there (no tag: the fake bridge's own VLAN, carried untagged) with the guest
    checksumming; the same network on a host where it is a Linux bridge stays a plain port."""
    nic = NicSpec(id=_id(33), name="nic1", mac="56:6f:1a:00:00:33", bridge="guestnet")
    spec = SPECS["minimal"].model_copy(update={"nics": (nic,)})
    meta = OvertMetadata(spec.id, 1)
    on_bond = ET.fromstring(domain_xml(spec, VirtMode.QEMU, meta,
                                       ovs_bridges=frozenset({"guestnet"}))).find(
        "./devices/interface")
    assert on_bond is not None
    assert on_bond.find("source").get("bridge") == "guestnet"  # type: ignore[union-attr]
    assert on_bond.find("virtualport").get("type") == "openvswitch"  # type: ignore[union-attr]
    assert on_bond.find("vlan") is None
    assert on_bond.find("./driver/host").get("csum") == "off"  # type: ignore[union-attr]
    plugged = ET.fromstring(nic_xml(nic, ovs=True))  # hot-plugged: the same port
    assert ET.canonicalize(ET.tostring(plugged), strip_text=True) == \
        ET.canonicalize(ET.tostring(on_bond), strip_text=True)
    on_nic = ET.fromstring(domain_xml(spec, VirtMode.QEMU, meta,
                                      ovs_bridges=frozenset({"other"}))).find(
        "./devices/interface")
    assert on_nic is not None
    assert on_nic.find("virtualport") is None and on_nic.find("driver") is None


def test_a_hot_plugged_nic_is_the_same_interface_as_at_start() -> None:
    """What `vm.nic_plug` attaches equals what the domain XML carries at start."""
    nic = NicSpec(id=_id(32), name="hot1", mac="56:6f:1a:00:00:32", bridge="vlan100", vlan=100,
                  linked=False)
    spec = SPECS["minimal"].model_copy(update={"nics": (nic,)})
    at_start = ET.fromstring(domain_xml(spec, VirtMode.QEMU, OvertMetadata(spec.id, 1))).find(
        "./devices/interface")
    plugged = ET.fromstring(nic_xml(nic))
    assert at_start is not None
    assert ET.canonicalize(ET.tostring(plugged), strip_text=True) == \
        ET.canonicalize(ET.tostring(at_start), strip_text=True)
    assert plugged.find("link").get("state") == "down"  # type: ignore[union-attr]
    assert [t.get("id") for t in plugged.findall("./vlan/tag")] == ["100"]


def test_a_migrating_vms_console_listens_on_its_destination() -> None:
    live = ("<domain type='qemu'><name>v</name><devices>"
            "<graphics type='vnc' port='5900' autoport='yes' listen='10.0.0.11' passwd='pw'>"
            "<listen type='address' address='10.0.0.11'/></graphics></devices></domain>")
    moved = ET.fromstring(with_display_address(live, "10.0.0.12"))
    graphics = moved.find("devices/graphics")
    assert graphics is not None
    assert graphics.get("listen") == "10.0.0.12" and graphics.get("passwd") == "pw"
    assert [e.get("address") for e in graphics.findall("listen")] == ["10.0.0.12"]
    assert moved.findtext("name") == "v"


def test_boot_order_is_per_device_in_the_order_asked() -> None:
    """network then hd: the first NIC boots first, then the bootable disk (not the first)."""
    spec = SPECS["web"].model_copy(update={
        "boot": (BootDevice.NETWORK, BootDevice.CDROM, BootDevice.HD),
        "disks": (SPECS["web"].disks[1], SPECS["web"].disks[0])})
    root = ET.fromstring(domain_xml(spec, VirtMode.QEMU, OvertMetadata(spec.id, 1),
                                    config_drive=Path("/var/lib/overt/config-drives/x.iso")))
    assert root.find("os/boot") is None  # libvirt refuses both kinds together
    devices = root.find("devices")
    assert devices is not None
    orders = {(e.tag, e.find("alias").get("name")): e.find("boot").get("order")  # type: ignore[union-attr]
              for e in devices if e.find("boot") is not None}
    assert orders == {("interface", f"ua-{_id(3)}"): "1", ("disk", f"ua-{_id(1)}"): "2"}


def test_the_config_drive_is_a_read_only_cdrom_nobody_boots_from() -> None:
    spec = SPECS["web"].model_copy(update={"boot": (BootDevice.CDROM, BootDevice.HD)})
    root = ET.fromstring(domain_xml(spec, VirtMode.QEMU, OvertMetadata(spec.id, 1),
                                    config_drive=Path("/var/lib/overt/config-drives/x.iso")))
    (cdrom,) = root.findall("devices/disk[@device='cdrom']")
    assert cdrom.find("source").get("file") == "/var/lib/overt/config-drives/x.iso"  # type: ignore[union-attr]
    assert cdrom.find("readonly") is not None and cdrom.find("boot") is None
    assert cdrom.find("target").attrib == {"dev": "hdc", "bus": "ide"}  # type: ignore[union-attr]
    assert not any(k.startswith("_") for k in cdrom.attrib)
    disk_orders = [d.find("boot").get("order") for d in root.findall("devices/disk")  # type: ignore[union-attr]
                   if d.find("boot") is not None]
    assert disk_orders == ["1"]
    without = ET.fromstring(domain_xml(spec, VirtMode.QEMU, OvertMetadata(spec.id, 1)))
    assert without.findall("devices/disk[@device='cdrom']") == []


def test_the_vms_cdrom_and_the_config_drive_coexist_on_ide() -> None:
    """Both on the i440fx's secondary IDE channel; only the VM's cdrom boots."""
    spec = SPECS["cdrom-on-nfs"]
    root = ET.fromstring(domain_xml(spec, VirtMode.QEMU, OvertMetadata(spec.id, 1),
                                    config_drive=Path("/var/lib/overt/config-drives/x.iso")))
    drives = {d.find("alias").get("name"): d  # type: ignore[union-attr]
              for d in root.findall("devices/disk[@device='cdrom']")}
    assert set(drives) == {"ua-config-drive", CDROM_ALIAS}
    cdrom = drives[CDROM_ALIAS]
    assert cdrom.get("type") == "network"
    assert cdrom.find("target").attrib == {"dev": "hdd", "bus": "ide"}  # type: ignore[union-attr]
    assert cdrom.find("boot").get("order") == "1"  # type: ignore[union-attr]
    assert drives["ua-config-drive"].find("boot") is None
    assert root.find("devices/disk[@device='disk']/boot").get("order") == "2"  # type: ignore[union-attr]


def test_an_empty_cdrom_drive_has_no_source_and_media_change_xml_names_the_drive() -> None:
    empty = ET.fromstring(cdrom_xml(CdromSpec()))
    assert (empty.get("type"), empty.get("device"), empty.find("source")) == \
        ("file", "cdrom", None)
    assert empty.find("alias").get("name") == CDROM_ALIAS  # type: ignore[union-attr]
    local = ET.fromstring(cdrom_xml(CdromSpec(source=FileSource(path="/sd/images/x.iso"))))
    assert local.find("source").get("file") == "/sd/images/x.iso"  # type: ignore[union-attr]
    assert local.find("readonly") is not None


def test_a_disks_snapshot_chain_is_given_nearest_first_over_its_template() -> None:
    nfs = "10.77.1.10"
    spec = VmSpec(id=VM_ID, name="snapped", memory_mib=256, graphics=None, disks=(DiskSpec(
        id=_id(9), source=NfsSource(server=nfs, path="/export/sd1/images/i9/v3"),
        chain=(BackingLayer(source=NfsSource(server=nfs, path="/export/sd1/images/i9/v2")),
               BackingLayer(source=NfsSource(server=nfs, path="/export/sd1/images/i9/v1"),
                            format=DiskFormat.RAW)),
        backing=IscsiSource(portal="10.77.1.10:3260", target="iqn.2024-01.dev.overt:sd1",
                            lun=1, offset=1 << 20, size=1 << 24)),))
    disk = ET.fromstring(domain_xml(spec, VirtMode.QEMU, OvertMetadata(spec.id, 1))).find(
        "devices/disk")
    assert disk is not None
    layers = []
    store = disk.find("backingStore")
    while store is not None and store.find("source") is not None:
        source = store.find("source")
        assert source is not None
        fmt = store.find("format")
        layers.append((source.get("name"), fmt.get("type") if fmt is not None else None))
        store = store.find("backingStore")
    assert layers == [("/export/sd1/images/i9/v2", "qcow2"), ("/export/sd1/images/i9/v1", "raw"),
                      ("iqn.2024-01.dev.overt:sd1/1", "qcow2")]
    assert store is not None and list(store) == []  # the bottom volume has none


def test_a_guest_on_an_ovs_port_checksums_its_own_frames() -> None:
    """The userspace datapath cannot finish offloaded checksums: virtio NICs on OVS ports
    are offered no checksum offload; Linux bridge ports keep it."""
    nics = (NicSpec(id=_id(33), mac="56:6f:1a:00:00:33", bridge="vlan100", vlan=100),
            NicSpec(id=_id(34), name="nic2", mac="56:6f:1a:00:00:34", bridge="ovirtmgmt"))
    spec = SPECS["minimal"].model_copy(update={"nics": nics})
    root = ET.fromstring(domain_xml(spec, VirtMode.QEMU, OvertMetadata(spec.id, 1)))
    tagged, plain = root.findall("./devices/interface")
    assert [h.get("csum") for h in tagged.findall("./driver/host")] == ["off"]
    assert plain.find("driver") is None


def test_a_disk_over_a_chap_lun_names_its_libvirt_secret_never_the_password() -> None:
    chap = ChapAuth(username="overt-init", password="Chap-Secret-0451")
    iqn = "iqn.2024-01.dev.overt:chap"
    lun = IscsiSource(portal="10.77.1.10:3260", target=iqn, lun=1, chap=chap)
    spec = VmSpec(id=VM_ID, name="chap", memory_mib=256, graphics=None, disks=(DiskSpec(
        id=_id(9), source=lun.model_copy(update={"offset": 1 << 22, "size": 1 << 24}),
        backing=lun.model_copy(update={"offset": 1 << 21, "size": 1 << 20})),))
    xml = domain_xml(spec, VirtMode.QEMU, OvertMetadata(spec.id, 1))
    assert "Chap-Secret-0451" not in xml and "Chap-Secret-0451" not in repr(spec)
    disk = ET.fromstring(xml).find("devices/disk")
    assert disk is not None
    for source in (disk.find("source"), disk.find("backingStore/source")):
        assert source is not None
        auth = source.find("auth")
        assert auth is not None and auth.get("username") == "overt-init"
        secret = auth.find("secret")
        assert secret is not None
        assert (secret.get("type"), secret.get("usage")) == ("iscsi", chap_secret_id(iqn))
    assert iscsi_credentials(spec) == {chap_secret_id(iqn): chap}
