"""Reading request bodies into the service layer's inputs (oVirt element names)."""

from __future__ import annotations

from overt.engine.api.initialization import read_initialization
from overt.engine.api.migration_wire import read_migration
from overt.engine.api.wire.parse import Node
from overt.engine.model.errors import InvalidInput
from overt.engine.model.status import DiskFormat, DiskInterface, NicInterface
from overt.engine.queries.lookup import Ref
from overt.engine.services.inputs import (
    DiskAttachmentInput,
    DiskInput,
    LogicalUnitInput,
    NicInput,
    RunOnce,
    VmInput,
)


def ref_of(node: Node | None) -> Ref | None:
    if node is None:
        return None
    return Ref(id=node.get_id(), name=node.get_str("name"))


def read_disk(node: Node) -> DiskInput:
    domains = node.items("storage_domains", "storage_domain")
    fmt = node.get_enum("format", DiskFormat)
    return DiskInput(
        name=node.get_str("name") or node.get_str("alias"),
        description=node.get_str("description"),
        provisioned_size=node.get_int("provisioned_size", minimum=1),
        format=fmt.value if fmt else None,
        sparse=node.get_bool("sparse"),
        storage_domain=ref_of(domains[0]) if domains else None,
        content_type=_content_type(node.get_str("content_type")),
        lun=_lun_storage(node.child("lun_storage")),
    )


def _lun_storage(storage: Node | None) -> LogicalUnitInput | None:
    """A direct LUN disk's LUN: one iSCSI logical unit (address, port, target, and its
    number as `lun_mapping` or `id`; `username` and `password` of a CHAP target)."""
    if storage is None:
        return None
    kind = (storage.get_str("type") or "iscsi").strip().lower()
    if kind != "iscsi":
        raise InvalidInput(f"disk.lun_storage.type {kind!r}: Overt gives VMs iSCSI LUNs only")
    units = storage.items("logical_units", "logical_unit")
    if len(units) != 1:
        raise InvalidInput("disk.lun_storage.logical_units must name one LUN (address, "
                           "port, target, and its number as lun_mapping or id)")
    unit = units[0]
    return LogicalUnitInput(id=unit.attrs.get("id") or unit.get_str("id"),
                            address=unit.get_str("address"),
                            port=unit.get_int("port", minimum=1), target=unit.get_str("target"),
                            lun_mapping=unit.get_int("lun_mapping", minimum=0),
                            username=unit.get_str("username"),
                            password=unit.get_str("password"))


def read_run_once(vm: Node) -> RunOnce:
    """A start's run-once settings: `vm.os.boot.devices` and the ISO in `vm.cdroms`."""
    boot = None
    os_node = vm.child("os")
    boot_node = os_node.child("boot") if os_node is not None else None
    if boot_node is not None:
        boot = [d.text.strip().lower() for d in boot_node.items("devices", "device")
                if d.text and d.text.strip()]
    cdroms = vm.items("cdroms", "cdrom")
    if not cdroms:
        return RunOnce(boot=boot)
    file_node = cdroms[0].child("file")
    file_id = None
    if file_node is not None:
        file_id = (file_node.attrs.get("id") or file_node.get_str("id") or "").strip() or None
    return RunOnce(boot=boot, cdrom_given=True, cdrom_file=file_id)


# oVirt's DiskContentType values Overt stores; the others (memory dumps, OVF stores...)
# are the engine's own disks, not made by users.
CONTENT_TYPES = ("data", "iso")


def _content_type(raw: str | None) -> str | None:
    if raw is None:
        return None
    value = raw.strip().lower()
    if value not in CONTENT_TYPES:
        raise InvalidInput(f"disk.content_type must be one of {', '.join(CONTENT_TYPES)}, "
                           f"not {raw!r}")
    return value


def read_disk_attachment(node: Node) -> DiskAttachmentInput:
    disk = node.child("disk")
    interface = node.get_enum("interface", DiskInterface)
    data = DiskAttachmentInput(
        interface=interface.value if interface else None,
        bootable=node.get_bool("bootable"), active=node.get_bool("active"),
        read_only=node.get_bool("read_only"))
    if disk is not None:
        # As in oVirt, a disk with an id names an existing disk (Ansible's ovirt_disk sends its
        # whole description along); without one it is a new disk.
        if disk.get_id() is not None:
            data.disk_ref = ref_of(disk)
        else:
            data.disk = read_disk(disk)
    return data


def read_nic(node: Node) -> NicInput:
    interface = node.get_enum("interface", NicInterface)
    mac = node.child("mac")
    return NicInput(
        name=node.get_str("name"),
        mac=mac.get_str("address") if mac is not None else None,
        vnic_profile=ref_of(node.child("vnic_profile")),
        network=ref_of(node.child("network")),
        interface=interface.value if interface else None,
        linked=node.get_bool("linked"), plugged=node.get_bool("plugged"),
    )


def read_vm(node: Node) -> VmInput:
    topology = None
    cpu = node.child("cpu")
    if cpu is not None:
        topology = cpu.child("topology")
    boot = None
    os_node = node.child("os")
    if os_node is not None:
        boot_node = os_node.child("boot")
        if boot_node is not None:
            devices = [d.text or "" for d in boot_node.items("devices", "device")]
            boot = [d.strip().lower() for d in devices if d.strip()]
    memory = node.get_int("memory")
    if memory is not None and memory <= 0:
        raise InvalidInput(f"vm.memory must be a positive number of bytes, not {memory}")
    placement = node.child("placement_policy")
    hosts = None
    if placement is not None and placement.child("hosts") is not None:
        hosts = [ref for h in placement.items("hosts", "host") if (ref := ref_of(h)) is not None]
    ha = node.child("high_availability")
    lease = node.child("lease")
    lease_domain = ref_of(lease.child("storage_domain")) if lease is not None else None
    init = node.child("initialization")
    return VmInput(
        name=node.get_str("name"), description=node.get_str("description"),
        comment=node.get_str("comment"),
        cluster=ref_of(node.child("cluster")), template=ref_of(node.child("template")),
        memory_bytes=memory,
        sockets=topology.get_int("sockets") if topology is not None else None,
        cores=topology.get_int("cores") if topology is not None else None,
        threads=topology.get_int("threads") if topology is not None else None,
        os_type=os_node.get_str("type") if os_node is not None else None,
        instance_type=ref_of(node.child("instance_type")),
        boot_devices=boot,
        bios_type=bios.get_str("type") if (bios := node.child("bios")) is not None else None,
        initialization=read_initialization(init) if init is not None else None,
        high_availability=ha.get_bool("enabled") if ha is not None else None,
        lease=lease_domain, lease_unset=lease is not None and lease_domain is None,
        ha_priority=ha.get_int("priority") if ha is not None else None,
        storage_error_resume_behaviour=node.get_str("storage_error_resume_behaviour"),
        placement_hosts=hosts,
        placement_affinity=placement.get_str("affinity") if placement is not None else None,
        migration=read_migration(node.child("migration"), "vm.migration"),
        migration_downtime_ms=node.get_int("migration_downtime"),
        disk_attachments=[read_disk_attachment(a)
                          for a in node.items("disk_attachments", "disk_attachment")],
        nics=[read_nic(n) for n in node.items("nics", "nic")],
    )
