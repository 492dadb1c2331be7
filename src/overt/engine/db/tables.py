"""The engine's tables. Column names follow oVirt's; status columns hold oVirt's values,
typed by the enums of `overt.engine.model.status`.

Desired state (what users asked) and observed state (what nodes report) are kept
apart on VMs and hosts: jobs and reconciliation close the gap between them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from overt.engine.model.status import (
    DataCenterStatus,
    DiskStatus,
    HostStatus,
    JobStatus,
    StorageDomainStatus,
    TemplateStatus,
    VmStatus,
)
from overt.protocol.host import KdumpStatus


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use UTC-aware ones")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect
                             ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def status_type(kind: type[StrEnum], length: int) -> Enum:
    """A status column of `kind`: loaded as its members, stored as their values (oVirt's
    strings) in a plain VARCHAR of `length`, so rows written before it was typed stay valid.

    Strings are compared as they are (a search for `status=up*` or for a status that does
    not exist finds nothing rather than failing); code writes members, as mypy checks."""
    return Enum(kind, native_enum=False, length=length,
                values_callable=lambda members: [m.value for m in members])


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UtcDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
        uuid.UUID: Uuid,
    }


def _id() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, default=uuid.uuid4)


class DataCenter(Base):
    __tablename__ = "data_centers"
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    local: Mapped[bool] = mapped_column(default=False)
    status: Mapped[DataCenterStatus] = mapped_column(status_type(DataCenterStatus, 32),
                                                     default=DataCenterStatus.UNINITIALIZED)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Cluster(Base):
    __tablename__ = "clusters"
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    data_center_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("data_centers.id"))
    cpu_type: Mapped[str] = mapped_column(String(64), default="")
    memory_overcommit_percent: Mapped[int] = mapped_column(default=100)
    # oVirt's MigrationOptions, as `model.migration_options.MigrationOptions.to_json`.
    migration: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # oVirt's FencingPolicy: the fields a client set (the rest: the engine's defaults).
    fencing_policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    data_center: Mapped[DataCenter] = relationship(lazy="raise")


class Host(Base):
    __tablename__ = "hosts"
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    address: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(default=54321)
    cluster_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clusters.id"))
    status: Mapped[HostStatus] = mapped_column(status_type(HostStatus, 32), index=True)
    status_detail: Mapped[str] = mapped_column(Text, default="")
    # Identity: the node's host UUID (libvirt's) and the certificate the engine CA issued.
    host_uuid: Mapped[uuid.UUID | None] = mapped_column(unique=True)
    certificate_fingerprint: Mapped[str | None] = mapped_column(String(128))
    certificate_pem: Mapped[str | None] = mapped_column(Text)
    pending_csr: Mapped[str | None] = mapped_column(Text)  # while pending approval
    # Trust: the node's key as the engine last saw it (pending or certified), the key an
    # administrator approved (the only one ever certified on announce), and the one-time
    # token `host add` issued (the install job accepts a node that proves it holds it).
    key_fingerprint: Mapped[str | None] = mapped_column(String(128))
    approved_key_fingerprint: Mapped[str | None] = mapped_column(String(128))
    # The SHA-256 digest of the host's one-time enrollment token (never the token).
    enroll_token: Mapped[str | None] = mapped_column(String(64))
    capabilities: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The hardware facts the node announced (`HardwareFacts`); None for a host that never
    # announced them (added by address, or an older agent).
    hardware: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The host networks as the node last reported them realised (`ReportedNetwork`s);
    # None until a node that manages host networks has reported.
    reported_networks: Mapped[list[Any] | None] = mapped_column(JSON)
    # The Open vSwitch bonds the node last reported on its switch (`ReportedBond`s); None
    # as for `reported_networks`.
    reported_bonds: Mapped[list[Any] | None] = mapped_column(JSON)
    memory_mib: Mapped[int] = mapped_column(default=0)
    free_memory_mib: Mapped[int] = mapped_column(default=0)
    cpu_percent: Mapped[float] = mapped_column(Float, default=0.0)
    # Event stream position (per agent run): the monitor applies events in seq order.
    boot_id: Mapped[uuid.UUID | None] = mapped_column()
    last_seq: Mapped[int] = mapped_column(default=0)
    last_heartbeat_at: Mapped[dt.datetime | None] = mapped_column()
    # When the monitor last found the host silent while it served (it went connecting);
    # its grace period runs from here. None for a host connecting after enrollment or
    # activation, which is not fenced for its silence.
    unreachable_since: Mapped[dt.datetime | None] = mapped_column()
    needs_resync: Mapped[bool] = mapped_column(default=False)
    broker_username: Mapped[str | None] = mapped_column(String(128))
    # Power management (oVirt's `power_management.enabled`); its agents are `FenceAgent`s.
    pm_enabled: Mapped[bool] = mapped_column(default=False)
    # oVirt's `power_management.kdump_detection`: before fencing, wait for fence_kdump
    # messages; the last one the engine's listener matched to this host, and its sender.
    kdump_detection: Mapped[bool] = mapped_column(default=True)
    kdump_message_at: Mapped[dt.datetime | None] = mapped_column()
    kdump_sender: Mapped[str | None] = mapped_column(String(64))
    # Whether the node's crash kernel is loaded with fence_kdump targets (vdsm's
    # `kdumpStatus`, from its capabilities): only `enabled` is waited for before a fence.
    # oVirt's iSCSI logins (no kernel session here: targets the host reached with these
    # credentials, remembered for its LUN list): address, port, target, username,
    # password_sealed.
    iscsi_logins: Mapped[list[Any] | None] = mapped_column(JSON)
    kdump_status: Mapped[KdumpStatus] = mapped_column(status_type(KdumpStatus, 16),
                                                      default=KdumpStatus.UNKNOWN)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    cluster: Mapped[Cluster] = relationship(lazy="raise")


class ProvisioningProfile(Base):
    """What a machine booting from a provisioning network gets: the node image, extra
    kernel arguments, and the cluster it joins once approved. `mac` None: the default
    profile (at most one), for machines with no profile of their own."""

    __tablename__ = "provisioning_profiles"
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(255), unique=True)
    mac: Mapped[str | None] = mapped_column(String(17), unique=True)  # lower case, colons
    image: Mapped[str] = mapped_column(String(255))  # a node image the engine serves
    kernel_args: Mapped[str] = mapped_column(Text, default="")
    cluster_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("clusters.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class FenceAgent(Base):
    """A host's power management agent (oVirt's `agent`): how to reach the host's BMC.

    The password is kept only encrypted (`engine.secrets`), never in plain text."""

    __tablename__ = "fence_agents"
    id: Mapped[uuid.UUID] = _id()
    host_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"),
                                               index=True)
    order: Mapped[int] = mapped_column(default=1)
    type: Mapped[str] = mapped_column(String(32))
    address: Mapped[str] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column()
    username: Mapped[str] = mapped_column(String(255), default="")
    password_sealed: Mapped[str] = mapped_column(Text, default="")
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class StorageDomain(Base):
    __tablename__ = "storage_domains"
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    type: Mapped[str] = mapped_column(String(16), default="data")
    storage_type: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)  # local: a directory on `host_id`
    address: Mapped[str | None] = mapped_column(String(255))  # nfs / iscsi server
    # The CHAP user of an iSCSI domain's own connection; its password sealed (SecretBox).
    chap_username: Mapped[str | None] = mapped_column(String(255))
    chap_password_sealed: Mapped[str | None] = mapped_column(Text)
    # The domain's id on storage (SD_UUID of its layout); a domain imported from an
    # export keeps the id its metadata carries, which need not be this row's.
    storage_uuid: Mapped[uuid.UUID | None] = mapped_column()
    # An imported iSCSI domain's volumes its import did not adopt (snapshot chains, thin
    # volumes over a template, illegal volumes): their metadata area lines, verbatim by
    # key (VOL_<volume id>). Their extents stay taken and the area keeps listing them.
    kept_volumes: Mapped[dict[str, str] | None] = mapped_column(JSON)
    host_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("hosts.id"))
    data_center_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("data_centers.id"))
    status: Mapped[StorageDomainStatus] = mapped_column(status_type(StorageDomainStatus, 32))
    available_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    used_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class StorageConnection(Base):
    """A storage connection added on its own (oVirt's storage server connections): an NFS
    export or an iSCSI portal and target. The connection a shared domain was made on lives
    in the domain's own row (`address`, `path`); these are the others."""

    __tablename__ = "storage_connections"
    id: Mapped[uuid.UUID] = _id()
    type: Mapped[str] = mapped_column(String(16))  # nfs / iscsi
    address: Mapped[str] = mapped_column(String(255))
    path: Mapped[str | None] = mapped_column(Text)  # an NFS export
    port: Mapped[int | None] = mapped_column()  # an iSCSI portal's port
    target: Mapped[str | None] = mapped_column(String(255))  # an iSCSI target (iqn.)
    nfs_version: Mapped[str | None] = mapped_column(String(16))
    # iSCSI CHAP: the password sealed by the engine's SecretBox, never in clear text.
    username: Mapped[str | None] = mapped_column(String(255))
    password_sealed: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class StorageDomainConnection(Base):
    """A further connection of an iSCSI domain (another portal of its target)."""

    __tablename__ = "storage_domain_connections"
    storage_domain_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("storage_domains.id", ondelete="CASCADE"), primary_key=True)
    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("storage_connections.id"), primary_key=True)


class Network(Base):
    __tablename__ = "networks"
    __table_args__ = (UniqueConstraint("data_center_id", "name"),)
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    data_center_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("data_centers.id"))
    vlan_id: Mapped[int | None] = mapped_column()
    mtu: Mapped[int] = mapped_column(default=0)  # 0: the default (1500)
    usages: Mapped[list[Any]] = mapped_column(default=list)
    bridge: Mapped[str] = mapped_column(String(15))  # the host bridge that carries it
    stp: Mapped[bool] = mapped_column(default=False)
    vxlan_id: Mapped[int | None] = mapped_column()  # set: a VXLAN overlay with this VNI


class VnicProfile(Base):
    __tablename__ = "vnic_profiles"
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    network_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("networks.id", ondelete="CASCADE"))
    port_mirroring: Mapped[bool] = mapped_column(default=False)
    network_filter: Mapped[str | None] = mapped_column(String(64))
    custom_properties: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ClusterNetwork(Base):
    """A network attached to a cluster (management networks are attached to all of theirs)."""

    __tablename__ = "cluster_networks"
    cluster_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("clusters.id", ondelete="CASCADE"), primary_key=True)
    network_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), primary_key=True)
    required: Mapped[bool] = mapped_column(default=True)


class MacPool(Base):
    """Ranges VM NICs take their MACs from; `ranges` is a list of [first, last] MACs."""

    __tablename__ = "mac_pools"
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    allow_duplicates: Mapped[bool] = mapped_column(default=False)
    default_pool: Mapped[bool] = mapped_column(default=False)
    ranges: Mapped[list[Any]] = mapped_column(default=list)


class ClusterMacPool(Base):
    """The MAC pool of a cluster other than the default one."""

    __tablename__ = "cluster_mac_pools"
    cluster_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("clusters.id", ondelete="CASCADE"), primary_key=True)
    mac_pool_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("mac_pools.id"))


class HostNetworkAttachment(Base):
    """A logical network wired to one of a host's NICs (what `setupnetworks` asks for)."""

    __tablename__ = "host_network_attachments"
    __table_args__ = (UniqueConstraint("host_id", "network_id"),)
    id: Mapped[uuid.UUID] = _id()
    host_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"),
                                               index=True)
    network_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("networks.id", ondelete="CASCADE"))
    nic_name: Mapped[str] = mapped_column(String(64))
    boot_protocol: Mapped[str] = mapped_column(String(16), default="none")
    address: Mapped[str | None] = mapped_column(String(64))
    netmask: Mapped[str | None] = mapped_column(String(64))
    gateway: Mapped[str | None] = mapped_column(String(64))
    # IPv6 apart, as oVirt has one assignment per family: none / static / autoconf.
    ipv6_boot_protocol: Mapped[str] = mapped_column(String(16), default="none",
                                                    server_default="none")
    ipv6_address: Mapped[str | None] = mapped_column(String(64))
    ipv6_prefix: Mapped[int | None] = mapped_column()
    ipv6_gateway: Mapped[str | None] = mapped_column(String(64))
    # What the node last confirmed it applied (None: not yet); commitnetconfig makes it durable.
    applied: Mapped[bool] = mapped_column(default=False)
    committed: Mapped[bool] = mapped_column(default=False)


class HostBond(Base):
    """Host NICs joined as one (an Open vSwitch bond), made by `setupnetworks`."""

    __tablename__ = "host_bonds"
    __table_args__ = (UniqueConstraint("host_id", "name"),)
    id: Mapped[uuid.UUID] = _id()
    host_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"),
                                               index=True)
    name: Mapped[str] = mapped_column(String(15))
    slaves: Mapped[list[Any]] = mapped_column(default=list)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Template(Base):
    __tablename__ = "templates"
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    cluster_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("clusters.id"))
    memory_mib: Mapped[int] = mapped_column(default=1024)
    cpu_sockets: Mapped[int] = mapped_column(default=1)
    cpu_cores: Mapped[int] = mapped_column(default=1)
    cpu_threads: Mapped[int] = mapped_column(default=1)
    os_type: Mapped[str] = mapped_column(String(64), default="other")
    # oVirt's Template.bios.type: what VMs made from it get unless they ask for another
    bios_type: Mapped[str] = mapped_column(String(32), default="i440fx_sea_bios",
                                           server_default="i440fx_sea_bios")
    # cloud-init that VMs made from the template start with (the VM's, when made from one)
    initialization: Mapped[dict[str, Any] | None] = mapped_column()
    status: Mapped[TemplateStatus] = mapped_column(status_type(TemplateStatus, 16),
                                                   default=TemplateStatus.OK)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Disk(Base):
    __tablename__ = "disks"
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    # None for a direct LUN disk (oVirt's `lun_storage`): a whole LUN given to VMs, named by
    # its portal (`lun_portal`, host:port) and `lun_path` (target/LUN number), as an iSCSI
    # domain's `address` and `path`.
    storage_domain_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("storage_domains.id"))
    lun_portal: Mapped[str | None] = mapped_column(String(255))
    lun_path: Mapped[str | None] = mapped_column(Text)
    # The CHAP user of a direct LUN disk's target and its password, sealed (SecretBox).
    lun_chap_username: Mapped[str | None] = mapped_column(String(255))
    lun_chap_password_sealed: Mapped[str | None] = mapped_column(Text)
    provisioned_size: Mapped[int] = mapped_column(BigInteger)
    actual_size: Mapped[int] = mapped_column(BigInteger, default=0)
    format: Mapped[str] = mapped_column(String(8), default="cow")
    sparse: Mapped[bool] = mapped_column(default=True)
    status: Mapped[DiskStatus] = mapped_column(status_type(DiskStatus, 16),
                                               default=DiskStatus.LOCKED)
    # Relative to the storage domain's path; a template's disk is the backing of its VMs'.
    image_path: Mapped[str] = mapped_column(Text)
    backing_disk_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("disks.id"))
    template_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("templates.id"))
    shareable: Mapped[bool] = mapped_column(default=False)
    # oVirt's disk content type: `data` (a VM's disk), `iso` (an ISO image for cdroms), or
    # `memory_dump_volume`/`memory_metadata_volume` (a snapshot's memory an import adopted).
    content_type: Mapped[str] = mapped_column(String(32), default="data")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class InstanceType(Base):
    """oVirt's instance type: hardware a VM created with it takes (memory, CPU topology)."""

    __tablename__ = "instance_types"
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    memory_mib: Mapped[int] = mapped_column(default=1024)
    cpu_sockets: Mapped[int] = mapped_column(default=1)
    cpu_cores: Mapped[int] = mapped_column(default=1)
    cpu_threads: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Vm(Base):
    __tablename__ = "vms"
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    cluster_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clusters.id"))
    template_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("templates.id"))
    memory_mib: Mapped[int] = mapped_column()
    cpu_sockets: Mapped[int] = mapped_column(default=1)
    cpu_cores: Mapped[int] = mapped_column(default=1)
    cpu_threads: Mapped[int] = mapped_column(default=1)
    os_type: Mapped[str] = mapped_column(String(64), default="other")
    boot_devices: Mapped[list[Any]] = mapped_column(default=lambda: ["hd"])
    # oVirt's bios.type: machine and firmware (`protocol.vm.BiosType`), taken at the next run
    bios_type: Mapped[str] = mapped_column(String(32), default="i440fx_sea_bios",
                                           server_default="i440fx_sea_bios")
    instance_type_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("instance_types.id", ondelete="SET NULL"))
    # The ISO disk in the VM's cdrom: for its next run, and in the running VM (as the last
    # start or live change put it there). None: an empty drive.
    cdrom_disk_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("disks.id", ondelete="SET NULL"))
    cdrom_current_disk_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("disks.id", ondelete="SET NULL"))
    # cloud-init (oVirt's initialization), as `model.initialization.Initialization.to_json`
    initialization: Mapped[dict[str, Any] | None] = mapped_column()
    high_availability: Mapped[bool] = mapped_column(default=False)
    # oVirt's VM lease: a slot of the `xleases` area of a shared storage domain, held by
    # the node that runs the VM (its lease keeper), so no second copy can start.
    lease_storage_domain_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("storage_domains.id"))
    lease_slot: Mapped[int | None] = mapped_column()
    ha_priority: Mapped[int] = mapped_column(default=1)  # oVirt's: higher restarts first
    # oVirt's placement policy: the hosts the VM may run on (ids, in the order given; none:
    # any host of its cluster) and whether it may move once it runs (a `VmAffinity`).
    placement_hosts: Mapped[list[Any]] = mapped_column(default=list)
    placement_affinity: Mapped[str] = mapped_column(String(16), default="migratable")
    # Overrides of the cluster's migration options (empty: inherit) and max downtime (ms).
    migration: Mapped[dict[str, Any]] = mapped_column(default=dict)
    migration_downtime_ms: Mapped[int | None] = mapped_column()
    # Observed state, owned by the monitor (and by jobs while they act).
    status: Mapped[VmStatus] = mapped_column(status_type(VmStatus, 32), default=VmStatus.DOWN,
                                             index=True)
    host_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("hosts.id"), index=True)
    # While the VM migrates: its destination, whose memory counts it (the reservation).
    migration_host_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("hosts.id"))
    # Desired state: what the user last asked for (up / down / suspended).
    desired_status: Mapped[str] = mapped_column(String(16), default="down")
    origin: Mapped[str] = mapped_column(String(16), default="overt")  # or "external"
    # The version of the VM's configuration (bumped on every change, sent to the node) and
    # the one it runs with, as its node reports it (None when it runs nowhere): they
    # differ when a change waits for the next start (oVirt's next run configuration).
    spec_version: Mapped[int] = mapped_column(default=1)
    running_spec_version: Mapped[int | None] = mapped_column()
    vnc_port: Mapped[int | None] = mapped_column()
    cpu_percent: Mapped[float] = mapped_column(Float, default=0.0)
    memory_used_mib: Mapped[int] = mapped_column(default=0)
    net_rx_bytes: Mapped[int] = mapped_column(BigInteger, default=0)  # counters of the last sample
    net_tx_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    start_time: Mapped[dt.datetime | None] = mapped_column()
    stop_time: Mapped[dt.datetime | None] = mapped_column()
    stop_reason: Mapped[str] = mapped_column(Text, default="")
    # Why its node says the VM is paused ("io_error": a disk's storage failed it), while
    # it is paused; and what then (a `StorageErrorResume`: resumed when its host reaches
    # the storage again, or left paused).
    paused_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    storage_error_resume_behaviour: Mapped[str] = mapped_column(
        String(16), default="auto_resume", server_default="auto_resume")
    saved_state_path: Mapped[str | None] = mapped_column(Text)  # suspended: memory image
    saved_state_host_id: Mapped[uuid.UUID | None] = mapped_column()  # ... on this host
    # A snapshot restored or previewed with its memory (oVirt's restore_memory): the next
    # start resumes the guest from that snapshot's saved state, once.
    resume_snapshot_id: Mapped[uuid.UUID | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class VmNic(Base):
    __tablename__ = "vm_nics"
    __table_args__ = (UniqueConstraint("vm_id", "name"),)
    id: Mapped[uuid.UUID] = _id()
    vm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"),
                                             index=True)
    name: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(17), unique=True)
    vnic_profile_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("vnic_profiles.id"))
    interface: Mapped[str] = mapped_column(String(16), default="virtio")
    plugged: Mapped[bool] = mapped_column(default=True)
    linked: Mapped[bool] = mapped_column(default=True)


class DiskAttachment(Base):
    """A disk attached to a VM (or a template); its id is the disk's, as in oVirt."""

    __tablename__ = "disk_attachments"
    __table_args__ = (UniqueConstraint("vm_id", "disk_id"),
                      UniqueConstraint("template_id", "disk_id"))
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    disk_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("disks.id", ondelete="CASCADE"))
    vm_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"),
                                                    index=True)
    template_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("templates.id", ondelete="CASCADE"), index=True)
    interface: Mapped[str] = mapped_column(String(16), default="virtio")
    bootable: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    read_only: Mapped[bool] = mapped_column(default=False)


class Snapshot(Base):
    """A VM's disk-only snapshot (oVirt's `regular` snapshot; the `active` one, the VM as it
    runs, is not a row). `status` is oVirt's: locked while a job makes or removes it."""

    __tablename__ = "snapshots"
    id: Mapped[uuid.UUID] = _id()
    vm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"),
                                             index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # oVirt's snapshot_type: `regular`, or `preview` (the VM's volumes before a preview,
    # kept to undo it); status: ok, locked or in_preview.
    kind: Mapped[str] = mapped_column(String(16), default="regular")
    # A `preview` snapshot: the snapshot the VM previews (each disk's chain ends at its
    # volume while the disk has a volume kept in this one).
    preview_of: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("snapshots.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="locked")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # A snapshot with memory (oVirt's persist_memorystate): the guest's saved RAM and
    # device state and the domain's XML, raw volumes of a shared domain (oVirt's memory
    # dump and metadata volumes), named like disk volumes (`shared_storage.volume_path`
    # or an iSCSI extent's path).
    memory_domain_id: Mapped[uuid.UUID | None] = mapped_column()
    memory_volume: Mapped[str | None] = mapped_column(Text)
    memory_metadata_volume: Mapped[str | None] = mapped_column(Text)


class SnapshotVolume(Base):
    """The volume of a disk that a snapshot froze: read-only, under the disk's next volume.

    A disk's chain on storage is its template's image (if any), then its snapshot volumes
    in `pk` order, then the disk's own `image_path` (the active volume)."""

    __tablename__ = "snapshot_volumes"
    __table_args__ = (UniqueConstraint("snapshot_id", "disk_id"),)
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    snapshot_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("snapshots.id", ondelete="CASCADE"), index=True)
    disk_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("disks.id", ondelete="CASCADE"),
                                               index=True)
    image_path: Mapped[str] = mapped_column(Text)  # relative to the domain's path
    format: Mapped[str] = mapped_column(String(8), default="cow")


class ExtentReservation(Base):
    """An extent of an iSCSI domain's LUN allocated to a volume a job is about to make (a
    snapshot's new volume), not yet in any disk's chain: no other volume may take it. It
    goes once the chain records the volume, or with the job that failed to make it."""

    __tablename__ = "extent_reservations"
    image_path: Mapped[str] = mapped_column(Text, primary_key=True)
    storage_domain_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("storage_domains.id", ondelete="CASCADE"), index=True)


class Job(Base):
    """A persisted user action (the seed's taskomatic). `state` drives the worker."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_claim", "state", "not_before"),)
    id: Mapped[uuid.UUID] = _id()
    action: Mapped[str] = mapped_column(String(64))  # handler name, e.g. "vm.start"
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[JobStatus] = mapped_column(status_type(JobStatus, 16),
                                              default=JobStatus.STARTED)
    # queued -> running -> done | failed; running jobs hold a lease that a crash lets lapse.
    state: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=5)
    not_before: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[dt.datetime | None] = mapped_column()
    error: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    vm_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    host_id: Mapped[uuid.UUID | None] = mapped_column()
    start_time: Mapped[dt.datetime] = mapped_column(default=utcnow)
    end_time: Mapped[dt.datetime | None] = mapped_column()
    last_updated: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    auto_cleared: Mapped[bool] = mapped_column(default=True)
    external: Mapped[bool] = mapped_column(default=False)


class Step(Base):
    __tablename__ = "steps"
    id: Mapped[uuid.UUID] = _id()
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"),
                                              index=True)
    number: Mapped[int] = mapped_column()
    type: Mapped[str] = mapped_column(String(16), default="executing")
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[JobStatus] = mapped_column(status_type(JobStatus, 16),
                                              default=JobStatus.STARTED)
    progress: Mapped[int | None] = mapped_column()
    host_id: Mapped[uuid.UUID | None] = mapped_column()
    start_time: Mapped[dt.datetime] = mapped_column(default=utcnow)
    end_time: Mapped[dt.datetime | None] = mapped_column()


class Lock(Base):
    """An object locked by a job; dies with the job (no lock outlives a crash)."""

    __tablename__ = "locks"
    resource_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    resource_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"),
                                              index=True)
    acquired_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """The audit log (oVirt's events)."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    severity: Mapped[str] = mapped_column(String(16), default="normal")
    code: Mapped[int] = mapped_column(default=0)
    description: Mapped[str] = mapped_column(Text)
    vm_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    host_id: Mapped[uuid.UUID | None] = mapped_column()
    cluster_id: Mapped[uuid.UUID | None] = mapped_column()
    data_center_id: Mapped[uuid.UUID | None] = mapped_column()
    storage_domain_id: Mapped[uuid.UUID | None] = mapped_column()
    user_id: Mapped[uuid.UUID | None] = mapped_column()
    job_id: Mapped[uuid.UUID | None] = mapped_column()
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    origin: Mapped[str] = mapped_column(String(32), default="overt")


class ChangeRecord(Base):
    """One change of a VM, host, job or audit event, written by the database's triggers
    (`db.change_log`): readers poll what changed since their position, not whole tables.
    `xid` is the writing transaction's id on PostgreSQL (None on SQLite)."""

    __tablename__ = "change_log"
    __table_args__ = ({"sqlite_autoincrement": True},)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                     primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(8))  # vm | host | job | audit
    object_id: Mapped[str] = mapped_column(String(64))
    xid: Mapped[int | None] = mapped_column(BigInteger, index=True)
    at: Mapped[dt.datetime] = mapped_column(server_default=func.current_timestamp(),
                                            index=True)


class User(Base):
    __tablename__ = "users"
    id: Mapped[uuid.UUID] = _id()
    user_name: Mapped[str] = mapped_column(String(255), unique=True)  # admin@internal
    domain: Mapped[str] = mapped_column(String(64), default="internal")
    password_hash: Mapped[str | None] = mapped_column(Text)
    administrator: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Directory users (LDAP profiles): the entry's stable id and what the directory said at the
    # last sign-in, including the ids of every group the user belongs to (nested ones too).
    external_id: Mapped[str | None] = mapped_column(String(255))
    namespace: Mapped[str] = mapped_column(String(255), default="")
    first_name: Mapped[str] = mapped_column(String(255), default="")
    last_name: Mapped[str] = mapped_column(String(255), default="")
    email: Mapped[str] = mapped_column(String(255), default="")
    directory_groups: Mapped[list[Any]] = mapped_column(default=list)
    # Internal users: when the password was set (None: never expires, as the installation's
    # administrator's), the hashes of the ones before it, and the failed sign-ins that lock
    # the account (kept here so every API process and a restart see the same lockout).
    password_changed_at: Mapped[dt.datetime | None] = mapped_column()
    password_history: Mapped[list[Any]] = mapped_column(default=list)
    failed_signins: Mapped[int] = mapped_column(default=0)
    failed_since: Mapped[dt.datetime | None] = mapped_column()
    locked_until: Mapped[dt.datetime | None] = mapped_column()


class Group(Base):
    """A directory group added to the engine, so permissions can name it."""

    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("domain", "external_id"),)
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(255))
    domain: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(255))
    namespace: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Role(Base):
    """A custom role; oVirt's predefined roles live in code (identity.roles)."""

    __tablename__ = "roles"
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(126), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    administrative: Mapped[bool] = mapped_column(default=False)
    permits: Mapped[list[Any]] = mapped_column(default=list)  # permit ids
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Permission(Base):
    """A role given to a user or a group on the system or on one object."""

    __tablename__ = "permissions"
    __table_args__ = (Index("ix_permissions_object", "object_type", "object_id"),)
    id: Mapped[uuid.UUID] = _id()
    role_id: Mapped[uuid.UUID] = mapped_column()
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True)
    group_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), index=True)
    object_type: Mapped[str] = mapped_column(String(32))  # system, vm, cluster, ...
    object_id: Mapped[uuid.UUID | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Token(Base):
    """An SSO access token; only its SHA-256 is stored."""

    __tablename__ = "tokens"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()


class NodeEventInbox(Base):
    """Node events received by the API's gateway (direct mode), waiting for the monitor."""

    __tablename__ = "node_event_inbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host_uuid: Mapped[uuid.UUID] = mapped_column(index=True)
    boot_id: Mapped[uuid.UUID] = mapped_column()
    seq: Mapped[int | None] = mapped_column()
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class StatsSample(Base):
    """History of host and VM stats (downsampled as it ages) for graphs."""

    __tablename__ = "stats_samples"
    __table_args__ = (Index("ix_stats_subject_time", "subject_id", "time"),
                      Index("ix_stats_resolution_time", "resolution_s", "time"))
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    subject_type: Mapped[str] = mapped_column(String(8))  # host | vm
    subject_id: Mapped[uuid.UUID] = mapped_column()
    time: Mapped[dt.datetime] = mapped_column()
    resolution_s: Mapped[int] = mapped_column(default=0)  # 0: raw; else averages over buckets
    cpu_percent: Mapped[float] = mapped_column(Float, default=0.0)
    memory_used_mib: Mapped[int] = mapped_column(default=0)
    memory_total_mib: Mapped[int] = mapped_column(default=0)
    net_rx_bps: Mapped[float] = mapped_column(Float, default=0.0)
    net_tx_bps: Mapped[float] = mapped_column(Float, default=0.0)


class WebSession(Base):
    """A signed-in browser of the web portal; only the SHA-256 of its cookie is stored."""

    __tablename__ = "web_sessions"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                               index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)  # after inactivity


class ConsoleToken(Base):
    """A one-time token that opens one VM's console through the engine's websocket proxy.

    Bound to the web session that asked for it; used once, then dead; short-lived.
    """

    __tablename__ = "console_tokens"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_digest: Mapped[str] = mapped_column(
        ForeignKey("web_sessions.digest", ondelete="CASCADE"), index=True)
    vm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"))
    expires_at: Mapped[dt.datetime] = mapped_column()
    used_at: Mapped[dt.datetime | None] = mapped_column()


class Tag(Base):
    """oVirt's tags: labels in a tree under the built-in root tag (parent_id None), assigned
    to VMs to find them by (`tag=web` in a search)."""

    __tablename__ = "tags"
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    parent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"),
                                                        index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class VmTag(Base):
    __tablename__ = "vm_tags"
    vm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"),
                                             primary_key=True)
    tag_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"),
                                              primary_key=True, index=True)


class AffinityGroup(Base):
    """oVirt's affinity group: VMs of a cluster kept together or apart (`vms_rule`) and on
    or off a set of its hosts (`hosts_rule`); an enforcing rule filters hosts, a soft one
    weighs them (by `priority`)."""

    __tablename__ = "affinity_groups"
    __table_args__ = (UniqueConstraint("cluster_id", "name"),)
    id: Mapped[uuid.UUID] = _id()
    cluster_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"),
                                                  index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    priority: Mapped[float] = mapped_column(Float, default=1.0)
    vms_rule_enabled: Mapped[bool] = mapped_column(default=False)
    vms_rule_positive: Mapped[bool] = mapped_column(default=True)
    vms_rule_enforcing: Mapped[bool] = mapped_column(default=False)
    hosts_rule_enabled: Mapped[bool] = mapped_column(default=False)
    hosts_rule_positive: Mapped[bool] = mapped_column(default=True)
    hosts_rule_enforcing: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AffinityGroupVm(Base):
    __tablename__ = "affinity_group_vms"
    group_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("affinity_groups.id", ondelete="CASCADE"), primary_key=True)
    vm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"),
                                             primary_key=True, index=True)


class AffinityGroupHost(Base):
    __tablename__ = "affinity_group_hosts"
    group_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("affinity_groups.id", ondelete="CASCADE"), primary_key=True)
    host_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"),
                                               primary_key=True, index=True)


class SnmpManager(Base):
    """A trap receiver (oVirt's notifier SNMP manager) the engine's notifier sends to.

    A v2c community or v3 passphrases are kept only sealed (`engine.secrets`)."""

    __tablename__ = "snmp_managers"
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(64), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(default=162)
    version: Mapped[str] = mapped_column(String(8))  # v2c | v3
    community_sealed: Mapped[str] = mapped_column(Text, default="")
    user_name: Mapped[str] = mapped_column(String(64), default="")  # v3: the USM user
    auth_sealed: Mapped[str] = mapped_column(Text, default="")
    priv_sealed: Mapped[str] = mapped_column(Text, default="")
    engine_id: Mapped[str] = mapped_column(String(80), default="")  # v3: the sender's
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class EventSubscription(Base):
    """A user's subscription to a notifiable event (oVirt's `event_subscription`); its id in
    the API is the event's name."""

    __tablename__ = "event_subscriptions"
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                               primary_key=True)
    event: Mapped[str] = mapped_column(String(128), primary_key=True)
    notification_method: Mapped[str] = mapped_column(String(8), default="snmp")
    address: Mapped[str] = mapped_column(String(255), default="")  # a manager's name or ""
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class NotifierCursor(Base):
    """How far the notifier has read the audit log (one row): events after `last_event_id`
    are still to notify, so a restart neither re-sends nor skips."""

    __tablename__ = "notifier_cursor"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_event_id: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class StorageLeaseRenewal(Base):
    """A host's last renewal of its id lease on a storage domain, as its keeper reported
    it (the engine's time, less the age the keeper gave): proof it still reaches storage."""

    __tablename__ = "storage_lease_renewals"
    host_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"),
                                               primary_key=True)
    storage_domain_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("storage_domains.id", ondelete="CASCADE"), primary_key=True)
    renewed_at: Mapped[dt.datetime] = mapped_column()
    lease_timeout_s: Mapped[float] = mapped_column()


class VmLeaseRenewal(Base):
    """The last renewal of a VM's lease the engine heard of, and by which host."""

    __tablename__ = "vm_lease_renewals"
    vm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"),
                                             primary_key=True)
    host_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    storage_domain_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("storage_domains.id", ondelete="CASCADE"))
    renewed_at: Mapped[dt.datetime] = mapped_column()
    lease_timeout_s: Mapped[float] = mapped_column()
