"""The libvirt side of a live storage migration, against a domain that answers as libvirt
9 does: the disk found by its alias, the mirror's destination built as a VM's disk
reaches a volume (an iSCSI extent as a slice of the LUN), the flags (reuse the volume
the engine made; a transient job on a persistent domain), and actions safe to repeat."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from typing import Any

import libvirt
import pytest

from overt.node.errors import NodeFailure
from overt.node.hypervisor.executor import BlockingCalls
from overt.node.hypervisor.libvirt_block_copy import BlockCopies
from overt.protocol import ErrorCode
from overt.protocol.vm import DiskFormat, IscsiSource, NfsSource

DISK = uuid.UUID(int=7)
TARGET = "iqn.2026-01.dev.overt:san1"
DESTINATION = IscsiSource(portal="10.9.9.9", target=TARGET, lun=1, offset=3 << 20,
                          size=72 << 20)
SOURCE_XML = """<source protocol='nfs' name='/export/sd/images/img/vol' index='1'>
      <host name='10.9.9.9'/><identity user='root' group='root'/></source>"""
MIRROR_XML = f"""<mirror type='network' job='copy' ready='{{ready}}'><format type='qcow2'/>
      <source protocol='iscsi' name='{TARGET}/1' index='3'><host name='10.9.9.9' port='3260'/>
        <slices><slice type='storage' offset='{3 << 20}' size='{72 << 20}'/></slices>
      </source></mirror>"""
EXTENT_SOURCE = f"""<source protocol='iscsi' name='{TARGET}/1' index='3'>
      <host name='10.9.9.9' port='3260'/>
      <slices><slice type='storage' offset='{3 << 20}' size='{72 << 20}'/></slices></source>"""


class Domain:
    """A running domain with one NFS disk (alias ua-DISK) whose block jobs are simulated."""

    def __init__(self, *, persistent: bool = False) -> None:
        self.source = SOURCE_XML
        self.job: dict[str, int] = {}
        self.ready = False
        self.persistent = persistent
        self.calls: list[tuple[str, Any]] = []

    def name(self) -> str:
        return "guest"

    def isActive(self) -> int:
        return 1

    def isPersistent(self) -> int:
        return int(self.persistent)

    def XMLDesc(self, _flags: int) -> str:
        mirror = MIRROR_XML.format(ready="yes" if self.ready else "no") if self.job else ""
        return (f"<domain><devices><disk type='network' device='disk'>"
                f"<driver name='qemu' type='qcow2'/>{self.source}{mirror}"
                f"<target dev='vda' bus='virtio'/><alias name='ua-{DISK}'/></disk>"
                "</devices></domain>")

    def blockJobInfo(self, disk: str, _flags: int) -> dict[str, int]:
        assert disk == "vda"
        return dict(self.job)

    def blockCopy(self, disk: str, xml: str, params: Any, flags: int) -> None:
        self.calls.append(("copy", (disk, xml, flags)))
        self.job = {"type": libvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_COPY, "cur": 0, "end": 100}

    def blockJobAbort(self, disk: str, flags: int) -> None:
        self.calls.append(("abort", flags))
        if flags & libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT:
            self.source = EXTENT_SOURCE
        self.job = {}

    def updateDeviceFlags(self, xml: str, flags: int) -> None:
        self.calls.append(("define", (xml, flags)))


@pytest.fixture
def copies() -> BlockCopies:
    return BlockCopies(BlockingCalls(workers=1))


async def test_a_copy_mirrors_the_disk_into_the_extent_made_beforehand_then_pivots(
        copies: BlockCopies) -> None:
    dom = Domain()
    state = await copies.start(dom, DISK, DESTINATION, DiskFormat.QCOW2)
    assert (state.on_destination, state.job, state.total) == (False, "copying", 100)
    [(_what, (target, xml, flags))] = dom.calls
    assert target == "vda" and flags == libvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT
    disk = ET.fromstring(xml)
    driver, source = disk.find("driver"), disk.find("source")
    assert driver is not None and driver.get("type") == "qcow2"
    assert source is not None and source.get("name") == f"{TARGET}/1"
    assert [(s.get("offset"), s.get("size")) for s in source.iter("slice")] == [
        (str(3 << 20), str(72 << 20))]
    backing = disk.find("backingStore")  # nothing under it: libvirt probes no chain
    assert backing is not None and len(backing) == 0
    # Asked again (a retry, an engine that took over): no second copy.
    assert (await copies.start(dom, DISK, DESTINATION, DiskFormat.QCOW2)).job == "copying"
    assert len(dom.calls) == 1
    with pytest.raises(NodeFailure, match="not ready"):
        await copies.pivot(dom, DISK, DESTINATION)
    dom.ready, dom.job["cur"] = True, 100
    assert (await copies.state(dom, DISK, DESTINATION)).job == "ready"
    state = await copies.pivot(dom, DISK, DESTINATION)
    assert state.on_destination and state.job == "none"
    assert dom.calls[-1] == ("abort", libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
    # Pivoted already: every action says so and does nothing.
    for action in (copies.pivot, copies.abort):
        assert (await action(dom, DISK, DESTINATION)).on_destination
    assert (await copies.start(dom, DISK, DESTINATION, DiskFormat.QCOW2)).on_destination
    assert len(dom.calls) == 2


async def test_an_abort_leaves_the_vm_on_its_volume(copies: BlockCopies) -> None:
    dom = Domain()
    await copies.start(dom, DISK, DESTINATION, DiskFormat.QCOW2)
    state = await copies.abort(dom, DISK, DESTINATION)
    assert (state.on_destination, state.job) == (False, "none")
    assert dom.calls[-1] == ("abort", 0) and dom.source == SOURCE_XML
    assert (await copies.abort(dom, DISK, DESTINATION)).job == "none"
    assert len(dom.calls) == 2


async def test_a_persistent_domain_gets_a_transient_job_and_its_definition_follows(
        copies: BlockCopies) -> None:
    dom = Domain(persistent=True)
    await copies.start(dom, DISK, DESTINATION, DiskFormat.QCOW2)
    assert dom.calls[0][1][2] == (libvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT
                                  | libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB)
    dom.ready = True
    await copies.pivot(dom, DISK, DESTINATION)
    what, (xml, flags) = dom.calls[-1]
    assert (what, flags) == ("define", libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    defined = ET.fromstring(xml)
    assert defined.find("mirror") is None
    source = defined.find("source")
    assert source is not None and source.get("protocol") == "iscsi"


async def test_another_block_job_on_the_disk_or_an_unknown_disk_is_refused(
        copies: BlockCopies) -> None:
    dom = Domain()
    await copies.start(dom, DISK, DESTINATION, DiskFormat.QCOW2)
    elsewhere = NfsSource(server="10.9.9.9", path="/export/sd/images/img/other")
    with pytest.raises(NodeFailure, match="another block job") as caught:
        await copies.start(dom, DISK, elsewhere, DiskFormat.QCOW2)
    assert caught.value.code is ErrorCode.INVALID_STATE
    with pytest.raises(NodeFailure) as missing:
        await copies.state(dom, uuid.uuid4(), DESTINATION)
    assert missing.value.code is ErrorCode.IMAGE_MISSING
    whole_lun = IscsiSource(portal="10.9.9.9", target=TARGET, lun=1)
    with pytest.raises(NodeFailure, match="not a whole LUN"):
        await copies.state(dom, DISK, whole_lun)
