"""Translating the engine's view of a VM (database rows) into the node's VmSpec."""

from __future__ import annotations

import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import (
    Disk,
    DiskAttachment,
    Host,
    Network,
    StorageDomain,
    Vm,
    VmNic,
    VnicProfile,
)
from overt.engine.model.errors import Conflict
from overt.engine.model.status import DiskStatus, StorageType, VmStatus
from overt.engine.queries.shared_storage import extent_of, lun_of, lun_ref
from overt.engine.queries.snapshot_chains import snapshot_volumes, volume_location
from overt.engine.secrets import SecretBox
from overt.protocol.storage import IscsiLunRef
from overt.protocol.vm import (
    BackingLayer,
    BiosType,
    BootDevice,
    CdromSpec,
    ConfigDriveSpec,
    CpuTopology,
    DiskBus,
    DiskFormat,
    DiskSource,
    DiskSpec,
    FileSource,
    GraphicsSpec,
    IscsiSource,
    LeaseSpec,
    NfsSource,
    NicSpec,
    VmSpec,
)

CONSOLE_LOG_DIR = "/var/log/overt/console"

_BUS = {"virtio": DiskBus.VIRTIO, "virtio_scsi": DiskBus.SCSI, "sata": DiskBus.SATA,
        "ide": DiskBus.SATA}


def image_location(domain: StorageDomain, disk: Disk) -> str:
    return f"{domain.path.rstrip('/')}/{disk.image_path}"


def disk_source(domain: StorageDomain, disk: Disk, box: SecretBox | None) -> DiskSource:
    """Where QEMU opens the disk; `box` opens an iSCSI domain's CHAP password."""
    if domain.storage_type == StorageType.NFS.value:
        return NfsSource(server=domain.address or "", path=image_location(domain, disk))
    if domain.storage_type == StorageType.ISCSI.value:
        lun, extent = lun_of(domain, box), extent_of(disk.image_path)
        return IscsiSource(portal=lun.portal, target=lun.target, lun=lun.lun, chap=lun.chap,
                           offset=extent[0] if extent else None,
                           size=extent[1] if extent else None)
    return FileSource(path=image_location(domain, disk))


def _volume_source(domain: StorageDomain, image_path: str, box: SecretBox | None
                   ) -> DiskSource:
    """A volume of a disk's chain on a shared domain, as QEMU opens it."""
    if domain.storage_type == StorageType.ISCSI.value:
        lun, extent = lun_of(domain, box), extent_of(image_path)
        return IscsiSource(portal=lun.portal, target=lun.target, lun=lun.lun, chap=lun.chap,
                           offset=extent[0] if extent else None,
                           size=extent[1] if extent else None)
    return NfsSource(server=domain.address or "", path=volume_location(domain, image_path))


async def vm_disks(session: AsyncSession, vm_id: uuid.UUID
                   ) -> list[tuple[DiskAttachment, Disk, StorageDomain]]:
    rows = await session.execute(
        select(DiskAttachment, Disk, StorageDomain)
        .join(Disk, Disk.id == DiskAttachment.disk_id)
        .join(StorageDomain, StorageDomain.id == Disk.storage_domain_id)
        .where(DiskAttachment.vm_id == vm_id)
        .order_by(DiskAttachment.bootable.desc(), DiskAttachment.pk))
    return [(a, d, sd) for a, d, sd in rows]


async def vm_lun_disks(session: AsyncSession, vm_id: uuid.UUID
                       ) -> list[tuple[DiskAttachment, Disk]]:
    """The VM's direct LUN disks (on no storage domain, so not among `vm_disks`)."""
    rows = await session.execute(
        select(DiskAttachment, Disk).join(Disk, Disk.id == DiskAttachment.disk_id)
        .where(DiskAttachment.vm_id == vm_id, Disk.storage_domain_id.is_(None))
        .order_by(DiskAttachment.bootable.desc(), DiskAttachment.pk))
    return [(a, d) for a, d in rows]


def lun_source(disk: Disk, box: SecretBox | None) -> IscsiSource:
    """A direct LUN disk as QEMU opens it: the whole LUN, with its target's CHAP."""
    lun = lun_ref(disk, box)
    return IscsiSource(portal=lun.portal, target=lun.target, lun=lun.lun, chap=lun.chap)


async def cdrom_spec(session: AsyncSession, disk_id: uuid.UUID | None, *,
                     box: SecretBox | None = None) -> CdromSpec:
    """The VM's cdrom drive holding ISO disk `disk_id` (None, or a disk gone: empty). All
    VMs run on i440fx (machine type `pc`), whose cdroms are on IDE."""
    disk = await session.get(Disk, disk_id) if disk_id is not None else None
    domain = await session.get(StorageDomain, disk.storage_domain_id) \
        if disk is not None else None
    if disk is None or domain is None:
        return CdromSpec()
    if disk.status != DiskStatus.OK:
        raise Conflict(f"ISO disk {disk.name} is {disk.status}; wait until it is ok.")
    return CdromSpec(source=disk_source(domain, disk, box), bus="ide")


def console_password() -> str:
    """A VNC password nobody knows: the console opens only with a ticket's password."""
    return secrets.token_urlsafe(6)[:8]


def nic_spec(nic: VmNic, network: Network) -> NicSpec:
    """A NIC as the node wires it: on its network's bridge, tagged when the network is."""
    return NicSpec(id=nic.id, name=nic.name, mac=nic.mac, bridge=network.bridge,
                   model=nic.interface if nic.interface in ("virtio", "e1000", "rtl8139")
                   else "virtio", linked=nic.linked, vlan=network.vlan_id)


async def build_vm_spec(session: AsyncSession, vm: Vm, *, vnc_password: str,
                        display_address: str = "0.0.0.0",  # noqa: S104
                        config_drive: ConfigDriveSpec | None = None,
                        lease_io_timeout_s: float = 10.0,
                        boot_devices: list[str] | None = None,
                        box: SecretBox | None = None) -> VmSpec:
    """The spec a node needs to run `vm` now; refuses disks that are not ready. `box`, the
    engine's secret box, opens the CHAP passwords of iSCSI domains (None: there are none).

    The same VM and password give the same spec, so a retried start is recognised by
    the node as the command it already ran.
    """
    disks = []
    for attachment, disk, domain in await vm_disks(session, vm.id):
        if not attachment.active:
            continue
        if disk.status != DiskStatus.OK:
            raise Conflict(f"Cannot run VM {vm.name}: disk {disk.name} is {disk.status}.")
        backing, base = None, None
        if disk.backing_disk_id is not None and domain.storage_type != StorageType.LOCALFS.value:
            base = await session.get(Disk, disk.backing_disk_id)
            base_domain = await session.get(StorageDomain, base.storage_domain_id) \
                if base is not None else None
            if base is None or base_domain is None:
                raise Conflict(f"Cannot run VM {vm.name}: the template disk under disk "
                               f"{disk.name} is gone.")
            backing = disk_source(base_domain, base, box)
        chain: tuple[BackingLayer, ...] = ()
        if domain.storage_type in (StorageType.NFS.value, StorageType.ISCSI.value):
            # libvirt cannot probe a chain over QEMU's network clients: it is told it.
            chain = tuple(BackingLayer(
                source=_volume_source(domain, volume.image_path, box),
                format=DiskFormat.QCOW2 if volume.format == "cow" else DiskFormat.RAW)
                for volume in reversed(await snapshot_volumes(session, disk.id)))
        disks.append(DiskSpec(
            id=disk.id, source=disk_source(domain, disk, box), backing=backing,
            format=DiskFormat.QCOW2 if disk.format == "cow" else DiskFormat.RAW,
            bus=_BUS.get(attachment.interface, DiskBus.VIRTIO), readonly=attachment.read_only,
            bootable=attachment.bootable, serial=str(disk.id)[:20], chain=chain,
            backing_format=DiskFormat.RAW if base is not None and base.format == "raw"
            else DiskFormat.QCOW2))
    for attachment, disk in await vm_lun_disks(session, vm.id):
        if attachment.active:  # a whole LUN, opened by QEMU's iSCSI client
            disks.append(DiskSpec(
                id=disk.id, source=lun_source(disk, box), format=DiskFormat.RAW,
                bus=_BUS.get(attachment.interface, DiskBus.VIRTIO),
                readonly=attachment.read_only, bootable=attachment.bootable,
                serial=str(disk.id)[:20]))
    nics = []
    rows = await session.execute(
        select(VmNic, Network).outerjoin(VnicProfile, VnicProfile.id == VmNic.vnic_profile_id)
        .outerjoin(Network, Network.id == VnicProfile.network_id)
        .where(VmNic.vm_id == vm.id, VmNic.plugged.is_(True)).order_by(VmNic.name))
    for nic, network in rows:
        if network is None:
            continue  # a NIC with no profile is unplugged from any network, as in oVirt
        nics.append(nic_spec(nic, network))
    boot = tuple(BootDevice(d) for d in (boot_devices or vm.boot_devices)
                 if d in BootDevice.__members__.values())
    return VmSpec(
        id=vm.id, name=vm.name, memory_mib=vm.memory_mib,
        cpu=CpuTopology(sockets=vm.cpu_sockets, cores=vm.cpu_cores, threads=vm.cpu_threads),
        bios=BiosType(vm.bios_type), boot=boot or (BootDevice.HD,), disks=tuple(disks), nics=tuple(nics),
        graphics=GraphicsSpec(password=vnc_password, listen=display_address),
        serial_log=f"{CONSOLE_LOG_DIR}/{vm.id}.log", spec_version=vm.spec_version,
        config_drive=config_drive,
        lease=await lease_spec(session, vm, lease_io_timeout_s, box=box),
        cdrom=await cdrom_spec(session, vm.cdrom_current_disk_id, box=box))


async def lease_spec(session: AsyncSession, vm: Vm, io_timeout_s: float = 10.0, *,
                     box: SecretBox | None = None) -> LeaseSpec | None:
    """Where the VM's lease lies, for the node's keeper to acquire before the start."""
    if vm.lease_storage_domain_id is None or vm.lease_slot is None:
        return None
    domain = await session.get(StorageDomain, vm.lease_storage_domain_id)
    if domain is not None and domain.storage_type == StorageType.ISCSI.value:
        lun = lun_of(domain, box)  # the areas follow the LUN's metadata area
        return LeaseSpec(domain_id=domain.id, server=lun.portal,
                         lun=IscsiSource(portal=lun.portal, target=lun.target, lun=lun.lun,
                                         chap=lun.chap),
                         slot=vm.lease_slot, io_timeout_s=io_timeout_s)
    if domain is None or domain.storage_type != StorageType.NFS.value:
        raise Conflict(f"Cannot run VM {vm.name}: its lease's storage domain is gone or "
                       "cannot hold leases.")
    return LeaseSpec(domain_id=domain.storage_uuid or domain.id, server=domain.address or "",
                     export=domain.path, slot=vm.lease_slot, io_timeout_s=io_timeout_s)


async def chap_luns(session: AsyncSession, vm: Vm, box: SecretBox | None
                    ) -> tuple[IscsiLunRef, ...]:
    """The LUNs with CHAP the running VM's disks are on (a thin disk's template disk, the
    ISO in its drive and its direct LUN disks too), with their credentials opened with
    `box`: the iSCSI secrets a migration's destination defines before the VM comes."""
    domains: dict[uuid.UUID, StorageDomain] = {}
    for attachment, disk, domain in await vm_disks(session, vm.id):
        if not attachment.active:
            continue
        domains[domain.id] = domain
        base = await session.get(Disk, disk.backing_disk_id) \
            if disk.backing_disk_id is not None else None
        if base is not None and base.storage_domain_id is not None:
            base_domain = await session.get(StorageDomain, base.storage_domain_id)
            if base_domain is not None:
                domains[base_domain.id] = base_domain
    iso = await session.get(Disk, vm.cdrom_current_disk_id) \
        if vm.cdrom_current_disk_id is not None else None
    if iso is not None and iso.storage_domain_id is not None:
        iso_domain = await session.get(StorageDomain, iso.storage_domain_id)
        if iso_domain is not None:
            domains[iso_domain.id] = iso_domain
    return tuple(lun_of(domain, box) for domain in domains.values()
                 if domain.storage_type == StorageType.ISCSI.value and domain.chap_username) \
        + tuple(lun_ref(disk, box) for attachment, disk in await vm_lun_disks(session, vm.id)
                if attachment.active and disk.lun_chap_username)


async def required_host(session: AsyncSession, vm: Vm) -> tuple[uuid.UUID | None, str]:
    """The host a VM must run on because its disks are on that host's local storage."""
    for _attachment, disk, domain in await vm_disks(session, vm.id):
        if domain.storage_type == StorageType.LOCALFS.value and domain.host_id is not None:
            return domain.host_id, f"disk {disk.name} is on local storage of another host"
    # The ISO in its drive: the running VM's (a migration), else its next run's (a start).
    iso_id = vm.cdrom_disk_id if vm.status == VmStatus.DOWN else vm.cdrom_current_disk_id
    iso = await session.get(Disk, iso_id) if iso_id is not None else None
    iso_domain = await session.get(StorageDomain, iso.storage_domain_id) \
        if iso is not None else None
    if iso is not None and iso_domain is not None and iso_domain.host_id is not None \
            and iso_domain.storage_type == StorageType.LOCALFS.value:
        return iso_domain.host_id, f"ISO {iso.name} in its cdrom is on local storage of " \
            "another host"
    return None, ""


async def memory_image_dir(session: AsyncSession, vm: Vm, host: Host) -> str:
    """Where a suspended VM's memory goes: the local storage of its host (its disks' first)."""
    candidates = [domain for _a, _d, domain in await vm_disks(session, vm.id)]
    candidates += (await session.execute(select(StorageDomain).where(
        StorageDomain.host_id == host.id).order_by(StorageDomain.name))).scalars().all()
    for domain in candidates:
        if domain.storage_type == StorageType.LOCALFS.value and domain.host_id == host.id:
            return domain.path.rstrip("/")
    raise Conflict(f"Cannot suspend VM {vm.name}: host {host.name} has no local storage domain "
                   "for the VM's memory.")
