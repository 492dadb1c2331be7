"""Reading data center, cluster, network and storage domain bodies into service inputs."""

from __future__ import annotations

from overt.engine.api.fencing_wire import read_fencing_policy
from overt.engine.api.migration_wire import read_migration
from overt.engine.api.readers import ref_of
from overt.engine.api.wire.parse import Node
from overt.engine.model.status import StorageDomainType, StorageType
from overt.engine.services.clusters import ClusterInput
from overt.engine.services.datacenters import DataCenterInput
from overt.engine.services.inputs import LogicalUnitInput
from overt.engine.services.networks import NetworkInput
from overt.engine.services.storage_connections import ConnectionInput
from overt.engine.services.storage_domains import StorageDomainInput


def read_data_center(node: Node) -> DataCenterInput:
    return DataCenterInput(name=node.get_str("name"), description=node.get_str("description"),
                           local=node.get_bool("local"))


def read_cluster(node: Node) -> ClusterInput:
    policy = node.child("memory_policy")
    over_commit = policy.child("over_commit") if policy is not None else None
    cpu = node.child("cpu")
    return ClusterInput(
        name=node.get_str("name"), description=node.get_str("description"),
        data_center=ref_of(node.child("data_center")),
        cpu_type=cpu.get_str("type") if cpu is not None else None,
        mac_pool=ref_of(node.child("mac_pool")),
        migration=read_migration(node.child("migration"), "cluster.migration"),
        fencing_policy=read_fencing_policy(node.child("fencing_policy")),
        memory_overcommit_percent=over_commit.get_int("percent")
        if over_commit is not None else None)


def read_network(node: Node) -> NetworkInput:
    vlan = node.child("vlan")
    vlan_id = vlan.get_int("id") if vlan is not None else None
    usages = node.child("usages")
    return NetworkInput(
        name=node.get_str("name"), description=node.get_str("description"),
        data_center=ref_of(node.child("data_center")),
        vlan_id=vlan_id, clear_vlan=vlan is not None and vlan_id is None,
        mtu=node.get_int("mtu"), stp=node.get_bool("stp"),
        usages=[u.text or "" for u in usages.all("usage")] if usages is not None else None,
        external_provider=ref_of(node.child("external_provider")))


def read_storage_domain(node: Node) -> StorageDomainInput:
    storage = node.child("storage")
    return StorageDomainInput(
        name=node.get_str("name"), description=node.get_str("description"),
        type=node.get_enum("type", StorageDomainType),
        storage_type=storage.get_enum("type", StorageType) if storage is not None else None,
        path=storage.get_str("path") if storage is not None else None,
        address=storage.get_str("address") if storage is not None else None,
        import_=bool(node.get_bool("import")),
        logical_units=[LogicalUnitInput(
            id=lu.attrs.get("id") or lu.get_str("id"), address=lu.get_str("address"),
            port=lu.get_int("port", minimum=1), target=lu.get_str("target"),
            lun_mapping=lu.get_int("lun_mapping", minimum=0),
            username=lu.get_str("username"), password=lu.get_str("password"))
            for lu in _logical_units(storage)],
        host=ref_of(node.child("host")))


def _logical_units(storage: Node | None) -> list[Node]:
    """A block domain's LUNs: in `storage.logical_units`, or in
    `storage.volume_group.logical_units` as oVirt's SDK sends them (an import's shape)."""
    if storage is None:
        return []
    units = storage.items("logical_units", "logical_unit")
    group = storage.child("volume_group")
    if not units and group is not None:
        units = group.items("logical_units", "logical_unit")
    return units


def read_storage_connection(node: Node) -> ConnectionInput:
    version = node.get_str("nfs_version")
    return ConnectionInput(
        type=node.get_enum("type", StorageType), address=node.get_str("address"),
        path=node.get_str("path"), port=node.get_int("port", minimum=1),
        target=node.get_str("target"), nfs_version=version,
        username=node.get_str("username"), password=node.get_str("password"),
        host=ref_of(node.child("host")))
