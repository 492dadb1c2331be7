"""An iSCSI domain moved between engines in the lab, through the official SDK: a disk on
the tgt LUN holding the test guest, the domain detached from the first engine, imported
by a second one (its own database and broker vhost) as oVirt's SDK imports a block
domain (`volume_group.logical_units`, `import_`), with its id and its disk, whose extent
still holds the guest (qemu-img compares it over iSCSI), attached to a VM that boots from
it on node2. Refused with nothing recorded: a LUN without an Overt domain (400) and the
same domain again (409)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from overt.lab.guest import GuestImage
from overt.lab.topology import Net
from overt.protocol.ovirt_metadata import parse_metadata
from overt.system.daemons import SYSTEM_RABBITMQ
from tests.e2e.lab.test_shared_storage import (
    MIB,
    Site,
    StorageLab,
    _lab_iscsi_domain,
    _new_vm,
    _run_on,
    _start_site,
    _virtual_size,
    open_storage_lab,
)
from tests.support.broker import Broker, close_broker, open_broker
from tests.support.demo import wait_until

pytestmark = [pytest.mark.lab, pytest.mark.amqp, pytest.mark.vm, pytest.mark.slow]


@pytest.fixture(scope="module")
def storage_lab(rabbitmq: Broker) -> Iterator[StorageLab]:
    with open_storage_lab(rabbitmq, OVERT_IMAGEIO_PORT="0") as opened:
        yield opened


def _lun_area(storage_lab: StorageLab, lun: str = "lun1") -> dict[str, str]:
    lab = storage_lab.lab
    with (lab.topology.host_dir(lab.topology.storage) / f"{lun}.img").open("rb") as f:
        return parse_metadata(f.read(MIB).split(b"\0", 1)[0].decode())


def _import(conn: sdk.Connection, storage_lab: StorageLab, host: types.Host, name: str,
            lun: str) -> types.StorageDomain:
    portal = str(storage_lab.lab.topology.host("storage").address(Net.STORAGE))
    return conn.system_service().storage_domains_service().add(types.StorageDomain(
        name=name, type=types.StorageDomainType.DATA, import_=True,
        host=types.Host(id=host.id), storage=types.HostStorage(
            type=types.StorageType.ISCSI, volume_group=types.VolumeGroup(logical_units=[
                types.LogicalUnit(id=lun, address=portal, port=3260,
                                  target=storage_lab.lab.topology.iscsi_target())]))))


def test_an_iscsi_domain_detached_from_one_engine_is_imported_by_another_with_its_disk(
        storage_lab: StorageLab, guest_image: GuestImage) -> None:
    site, lab = storage_lab.first, storage_lab.lab
    domain_id = _lab_iscsi_domain(site)
    portal = str(lab.topology.host("storage").address(Net.STORAGE))
    conn = site.connect()
    try:
        disks = conn.system_service().disks_service()
        disk = disks.add(types.Disk(name="lab-iscsi-moved", format=types.DiskFormat.COW,
                                    provisioned_size=_virtual_size(guest_image),
                                    storage_domains=[types.StorageDomain(id=domain_id)]))
        wait_until(lambda: disks.disk_service(disk.id).get().status == types.DiskStatus.OK,
                   120, "the iSCSI disk to be created")
    finally:
        conn.close()
    (line,) = [v for k, v in _lun_area(storage_lab).items()
               if k.startswith("VOL_") and v.startswith(f"{disk.id},")]
    offset, length = line.split(",")[1:3]
    extent = (f"driver=qcow2,file.driver=raw,file.offset={offset},file.size={length},"
              f"file.file.driver=iscsi,file.file.transport=tcp,file.file.portal={portal}:3260,"
              f"file.file.target={lab.topology.iscsi_target()},file.file.lun=1")
    copied = subprocess.run(lab.exec_argv("node1", [
        "qemu-img", "convert", "-n", "-f", "qcow2", str(guest_image.qcow2_disk),
        "--target-image-opts", extent]), capture_output=True, text=True, check=False,
        timeout=300)
    assert copied.returncode == 0, copied.stderr

    conn = site.connect()
    try:
        wanted = {d.id: (d.name, d.provisioned_size, d.format) for d in
                  conn.system_service().storage_domains_service().storage_domain_service(
                      domain_id).disks_service().list()}
        assert disk.id in wanted
        dc = conn.system_service().data_centers_service().list(search="name=Default")[0]
        attached = conn.system_service().data_centers_service().data_center_service(
            dc.id).storage_domains_service().storage_domain_service(domain_id)
        attached.deactivate()
        wait_until(lambda: attached.get().status == types.StorageDomainStatus.MAINTENANCE, 60,
                   "maintenance")
        attached.remove()
        sd = conn.system_service().storage_domains_service().storage_domain_service(domain_id)
        wait_until(lambda: sd.get().status == types.StorageDomainStatus.UNATTACHED, 120,
                   "the domain to be detached")
    finally:
        conn.close()
    assert _lun_area(storage_lab)["POOL_UUID"] == ""

    # The second engine's agent shares node2 with the first's (one libvirtd per lab node).
    broker = open_broker(SYSTEM_RABBITMQ)
    second: Site | None = None
    try:
        second = _start_site(lab, "second", storage_lab.base, broker, ["node2"],
                             node_port=54329)
        conn = second.connect()
        try:
            host = second.host_of(conn, "node2")
            sds = conn.system_service().storage_domains_service()
            with pytest.raises(sdk.Error) as blank:  # LUN 2 holds no Overt domain
                _import(conn, storage_lab, host, "lab-not-a-domain", "2")
            assert blank.value.code == 400 and "holds no Overt storage domain" in str(
                blank.value)
            assert sds.list() == []
            imported = _import(conn, storage_lab, host, "lab-iscsi-imported", "1")
            assert imported.id == domain_id  # it keeps its id
            service = sds.storage_domain_service(imported.id)
            wait_until(lambda: service.get().status == types.StorageDomainStatus.UNATTACHED,
                       120, "the domain to be imported")
            found = {d.id: (d.name, d.provisioned_size, d.format)
                     for d in service.disks_service().list()}
            assert found == wanted
            with pytest.raises(sdk.Error) as again:
                _import(conn, storage_lab, host, "lab-iscsi-again", "1")
            assert again.value.code == 409 and "lab-iscsi-imported" in str(again.value)
            assert [s.name for s in sds.list()] == ["lab-iscsi-imported"]
            dc2 = conn.system_service().data_centers_service().list(search="name=Default")[0]
            attached2 = conn.system_service().data_centers_service().data_center_service(
                dc2.id).storage_domains_service()
            attached2.add(types.StorageDomain(id=imported.id))
            wait_until(lambda: attached2.storage_domain_service(imported.id).get().status
                       == types.StorageDomainStatus.ACTIVE, 120, "the domain to be active")
        finally:
            conn.close()
        area = _lun_area(storage_lab)
        assert (area["SDUUID"], area["POOL_UUID"]) == (domain_id, dc2.id)
        assert line in area.values()  # the disk's line, as the first engine wrote it
        source = f"driver=qcow2,file.driver=file,file.filename={guest_image.qcow2_disk}"
        compared = subprocess.run(lab.exec_argv("node2", [
            "qemu-img", "compare", "--image-opts", source, extent]), capture_output=True,
            text=True, check=False, timeout=300)
        assert compared.returncode == 0, compared.stdout + compared.stderr
        _new_vm(second, "lab-iscsi-imported-vm", disk.id)
        _run_on(second, "lab-iscsi-imported-vm", "node2", "iscsi")
    finally:
        if second is not None:
            second.stop()
        close_broker(broker)
