"""ISO disks, a VM's cdrom, operating systems and instance types through the official SDK
against an engine with no nodes: what is listed, what a down VM's next run gets, and the
faults bad input gets (nothing changed)."""

from __future__ import annotations

import asyncio
import uuid

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.tables import Cluster, DataCenter, Disk, StorageDomain
from overt.engine.model.status import DiskStatus, StorageDomainStatus
from tests.support.engine import RunningEngine

MIB = 1 << 20
EMPTY_CDROM = "00000000-0000-0000-0000-000000000000"


def _refused(code: int, call: object, *args: object, **kwargs: object) -> sdk.Error:
    with pytest.raises(sdk.Error) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    assert caught.value.code == code, caught.value
    return caught.value


def _disks(engine: RunningEngine, prefix: str) -> dict[str, str]:
    """A local domain of the Default data center holding an ISO disk and a data disk, and
    a domain of another data center holding an ISO disk (rows as their jobs leave them)."""
    async def insert() -> dict[str, str]:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                cluster = (await session.execute(select(Cluster).where(
                    Cluster.name == "Default"))).scalar_one()
                other_dc = DataCenter(id=uuid.uuid4(), name=f"{prefix}-far")
                session.add(other_dc)
                ids: dict[str, str] = {}
                for name, dc in ((f"{prefix}-sd", cluster.data_center_id),
                                 (f"{prefix}-far-sd", other_dc.id)):
                    domain = StorageDomain(id=uuid.uuid4(), name=name, storage_type="localfs",
                                           path=f"/var/tmp/{name}", data_center_id=dc,
                                           status=StorageDomainStatus.ACTIVE)
                    session.add(domain)
                    ids[name] = str(domain.id)
                await session.flush()
                for name, sd, content in ((f"{prefix}-boot.iso", f"{prefix}-sd", "iso"),
                                          (f"{prefix}-data", f"{prefix}-sd", "data"),
                                          (f"{prefix}-far.iso", f"{prefix}-far-sd", "iso")):
                    disk = Disk(id=uuid.uuid4(), name=name, storage_domain_id=uuid.UUID(ids[sd]),
                                provisioned_size=4 * MIB, format="raw", sparse=False,
                                status=DiskStatus.OK, image_path=f"images/{name}",
                                content_type=content)
                    session.add(disk)
                    ids[name] = str(disk.id)
                return ids
        finally:
            await db.dispose()
    return asyncio.run(insert())


def _vm(conn: sdk.Connection, name: str, **extra: object) -> types.Vm:
    return conn.system_service().vms_service().add(types.Vm(
        name=name, cluster=types.Cluster(name="Default"), template=types.Template(name="Blank"),
        memory=256 * MIB, **extra))  # type: ignore[arg-type]


def test_iso_disks_are_listed_as_files_and_disks_of_their_domain(
        connection: sdk.Connection, api_engine: RunningEngine) -> None:
    ids = _disks(api_engine, "f")
    domain = connection.system_service().storage_domains_service().storage_domain_service(
        ids["f-sd"])
    files = domain.files_service().list()
    assert [(f.id, f.name) for f in files] == [(ids["f-boot.iso"], "f-boot.iso")]
    assert domain.files_service().file_service(ids["f-boot.iso"]).get().name == "f-boot.iso"
    _refused(404, domain.files_service().file_service(ids["f-data"]).get)
    contents = {d.name: d.content_type for d in domain.disks_service().list()}
    assert contents == {"f-boot.iso": types.DiskContentType.ISO,
                        "f-data": types.DiskContentType.DATA}


def test_a_down_vms_cdrom_is_its_next_runs_media(connection: sdk.Connection,
                                                 api_engine: RunningEngine) -> None:
    ids = _disks(api_engine, "n")
    vm = _vm(connection, "cd-next")
    cdroms = connection.system_service().vms_service().vm_service(vm.id).cdroms_service()
    [cdrom] = cdroms.list()
    assert cdrom.id == EMPTY_CDROM and cdrom.file is None
    cdrom_service = cdroms.cdrom_service(cdrom.id)

    changed = cdrom_service.update(types.Cdrom(file=types.File(id=ids["n-boot.iso"])))
    assert changed.file.id == ids["n-boot.iso"]
    assert cdrom_service.get().file.id == ids["n-boot.iso"]
    assert cdrom_service.get(current=True).file.id == ids["n-boot.iso"]  # down: the same

    ejected = cdrom_service.update(types.Cdrom(file=types.File(id="")))
    assert ejected.file is None and cdrom_service.get().file is None


def test_bad_cdrom_changes_are_refused_and_change_nothing(
        connection: sdk.Connection, api_engine: RunningEngine) -> None:
    ids = _disks(api_engine, "b")
    vm = _vm(connection, "cd-bad")
    service = connection.system_service().vms_service().vm_service(vm.id)
    cdrom = service.cdroms_service().cdrom_service(EMPTY_CDROM)
    cdrom.update(types.Cdrom(file=types.File(id=ids["b-boot.iso"])))

    not_iso = _refused(400, cdrom.update, types.Cdrom(file=types.File(id=ids["b-data"])))
    assert "not an ISO image" in str(not_iso)
    far = _refused(400, cdrom.update, types.Cdrom(file=types.File(id=ids["b-far.iso"])))
    assert "outside the VM's data center" in str(far)
    _refused(400, cdrom.update, types.Cdrom(file=types.File(id=str(uuid.uuid4()))))
    _refused(400, cdrom.update, types.Cdrom(file=types.File(id="no-such.iso")))
    down = _refused(409, cdrom.update, types.Cdrom(file=types.File(id=ids["b-boot.iso"])),
                    current=True)
    assert "running VM only" in str(down)
    _refused(404, service.cdroms_service().cdrom_service(str(uuid.uuid4())).get)
    assert cdrom.get().file.id == ids["b-boot.iso"]

    # Nor in a run once: refused before the VM is placed anywhere.
    once = _refused(400, service.start, vm=types.Vm(
        os=types.OperatingSystem(boot=types.Boot(devices=[types.BootDevice.CDROM])),
        cdroms=[types.Cdrom(file=types.File(id=ids["b-data"]))]))
    assert "not an ISO image" in str(once)
    assert service.get().status == types.VmStatus.DOWN

    # An ISO is no disk of a VM.
    attachments = service.disk_attachments_service()
    _refused(400, attachments.add, types.DiskAttachment(
        disk=types.Disk(id=ids["b-boot.iso"]), interface=types.DiskInterface.VIRTIO))
    assert attachments.list() == []


def test_operating_systems_and_a_vms_os_type(connection: sdk.Connection) -> None:
    systems = connection.system_service().operating_systems_service()
    names = {o.name for o in systems.list()}
    assert {"other", "rhel_9x64", "debian_12x64", "windows_2022"} <= names
    rhel = next(o for o in systems.list() if o.name == "rhel_9x64")
    assert systems.operating_system_service(rhel.id).get().description.startswith(
        "Red Hat Enterprise Linux 9")

    vm = _vm(connection, "os-typed", os=types.OperatingSystem(type="debian_12x64"))
    service = connection.system_service().vms_service().vm_service(vm.id)
    assert service.get().os.type == "debian_12x64"
    service.update(types.Vm(os=types.OperatingSystem(type="windows_2022")))
    assert service.get().os.type == "windows_2022"
    _refused(400, service.update, types.Vm(os=types.OperatingSystem(type="beos_5")))
    assert service.get().os.type == "windows_2022"
    _refused(400, _vm, connection, "os-bad", os=types.OperatingSystem(type="beos_5"))


def test_instance_types_and_a_vm_made_with_one(connection: sdk.Connection) -> None:
    kinds = connection.system_service().instance_types_service()
    made = kinds.add(types.InstanceType(
        name="medium", description="2 vCPUs", memory=512 * MIB,
        cpu=types.Cpu(topology=types.CpuTopology(sockets=1, cores=2, threads=1))))
    assert (made.memory, made.cpu.topology.cores) == (512 * MIB, 2)
    service = kinds.instance_type_service(made.id)
    service.update(types.InstanceType(memory=768 * MIB))
    assert service.get().memory == 768 * MIB
    assert [k.name for k in kinds.list()] == ["medium"]

    _refused(409, kinds.add, types.InstanceType(name="medium", memory=256 * MIB))
    _refused(400, kinds.add, types.InstanceType(name="tiny", memory=3))
    _refused(400, service.update, types.InstanceType(
        cpu=types.Cpu(topology=types.CpuTopology(sockets=0))))
    assert service.get().cpu.topology.sockets == 1

    vm = connection.system_service().vms_service().add(types.Vm(
        name="typed", cluster=types.Cluster(name="Default"),
        template=types.Template(name="Blank"), instance_type=types.InstanceType(id=made.id)))
    assert vm.memory == 768 * MIB and vm.cpu.topology.cores == 2
    assert vm.instance_type.id == made.id
    _refused(400, connection.system_service().vms_service().add, types.Vm(
        name="typeless", cluster=types.Cluster(name="Default"),
        template=types.Template(name="Blank"), instance_type=types.InstanceType(name="nosuch")))

    # On an edit too: the type's hardware replaces the VM's; an unknown type changes nothing.
    plain = _vm(connection, "retyped")
    plain_service = connection.system_service().vms_service().vm_service(plain.id)
    _refused(400, plain_service.update, types.Vm(
        description="typed now", instance_type=types.InstanceType(name="nosuch")))
    kept = plain_service.get()
    assert (kept.memory, kept.cpu.topology.cores, kept.instance_type) == (256 * MIB, 1, None)
    assert kept.description in (None, "")
    retyped = plain_service.update(types.Vm(instance_type=types.InstanceType(name="medium")))
    assert (retyped.memory, retyped.cpu.topology.cores) == (768 * MIB, 2)
    assert retyped.instance_type.id == made.id

    service.remove()
    assert kinds.list() == []
    again = connection.system_service().vms_service().vm_service(vm.id).get()
    assert again.memory == 768 * MIB and again.instance_type is None
