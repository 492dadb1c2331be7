"""What each collection can be searched by, as oVirt names it: its own fields (`name`, `id`,
`status`, ...) and other objects' (`datacenter=`, `cluster=`, `host=`, `vm.name=`).

Resources may add fields of their own when they list; these are the defaults for every
listing of a table. Other objects' fields are correlated subqueries over aliases, so they
work whatever the listing joins.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import aliased

from overt.engine.api.search import Related
from overt.engine.db.tables import (
    AuditEvent,
    Cluster,
    DataCenter,
    Disk,
    DiskAttachment,
    Host,
    Job,
    Network,
    StorageDomain,
    Tag,
    Template,
    User,
    Vm,
    VmTag,
    VnicProfile,
)

Fields = dict[str, Any]


def _by_name(prefix: str, table: Any, outer_id: Any) -> Fields:
    """`prefix` (its name), `prefix.name` and `prefix.id` of the object `outer_id` names."""
    other = aliased(table)
    query = select(other.id).where(other.id == outer_id)
    return {prefix: Related(other.name, query), f"{prefix}.name": Related(other.name, query),
            f"{prefix}.id": Related(other.id, query)}


def _data_center_via_cluster(cluster_id: Any) -> Fields:
    dc, cluster = aliased(DataCenter), aliased(Cluster)
    query = select(dc.id).join(cluster, cluster.data_center_id == dc.id).where(
        cluster.id == cluster_id)
    return {"datacenter": Related(dc.name, query), "datacenter.name": Related(dc.name, query),
            "datacenter.id": Related(dc.id, query)}


def _vms_of(link: Any) -> Fields:
    """VMs related to the listed object through `link(vm_alias)`."""
    vm = aliased(Vm)
    query = select(vm.id).where(link(vm))
    return {"vm": Related(vm.name, query), "vm.name": Related(vm.name, query),
            "vm.id": Related(vm.id, query), "vms.name": Related(vm.name, query)}


def _vm_fields() -> Fields:
    disk, attachment = aliased(Disk), aliased(DiskAttachment)
    disks = select(disk.id).join(attachment, attachment.disk_id == disk.id).where(
        attachment.vm_id == Vm.id)
    return {"name": Vm.name, "id": Vm.id, "status": Vm.status, "description": Vm.description,
            "comment": Vm.comment, "origin": Vm.origin, "memory": Vm.memory_mib,
            **_by_name("cluster", Cluster, Vm.cluster_id),
            **_by_name("host", Host, Vm.host_id),
            **_by_name("template", Template, Vm.template_id),
            **_data_center_via_cluster(Vm.cluster_id),
            "disk.name": Related(disk.name, disks), "disk.id": Related(disk.id, disks),
            **_tags_of(VmTag.vm_id == Vm.id)}


def _tags_of(assigned: Any) -> Fields:
    """`tag=web`: objects that carry the tag (through the assignment table's condition)."""
    tag = aliased(Tag)
    query = select(tag.id).join(VmTag, VmTag.tag_id == tag.id).where(assigned)
    return {"tag": Related(tag.name, query), "tag.name": Related(tag.name, query),
            "tag.id": Related(tag.id, query)}


def _template_fields() -> Fields:
    # A template of no cluster (Blank, images shared by the engine) is in every data center.
    dc, cluster = aliased(DataCenter), aliased(Cluster)
    dcs = select(dc.id).where(or_(Template.cluster_id.is_(None), select(cluster.id).where(
        cluster.id == Template.cluster_id, cluster.data_center_id == dc.id).exists()))
    return {"name": Template.name, "id": Template.id, "status": Template.status,
            "description": Template.description,
            **_by_name("cluster", Cluster, Template.cluster_id),
            "datacenter": Related(dc.name, dcs), "datacenter.name": Related(dc.name, dcs),
            "datacenter.id": Related(dc.id, dcs),
            **_vms_of(lambda vm: vm.template_id == Template.id)}


def _host_fields() -> Fields:
    return {"name": Host.name, "id": Host.id, "status": Host.status, "address": Host.address,
            "description": Host.description,
            **_by_name("cluster", Cluster, Host.cluster_id),
            **_data_center_via_cluster(Host.cluster_id),
            **_vms_of(lambda vm: vm.host_id == Host.id)}


def _cluster_fields() -> Fields:
    return {"name": Cluster.name, "id": Cluster.id, "description": Cluster.description,
            **_by_name("datacenter", DataCenter, Cluster.data_center_id)}


def _data_center_fields() -> Fields:
    cluster = aliased(Cluster)
    clusters = select(cluster.id).where(cluster.data_center_id == DataCenter.id)
    return {"name": DataCenter.name, "id": DataCenter.id, "status": DataCenter.status,
            "description": DataCenter.description,
            "cluster": Related(cluster.name, clusters),
            "clusters.name": Related(cluster.name, clusters)}


def _network_fields() -> Fields:
    return {"name": Network.name, "id": Network.id, "description": Network.description,
            "vlan": Network.vlan_id, "vlanid": Network.vlan_id,
            **_by_name("datacenter", DataCenter, Network.data_center_id)}


def _storage_domain_fields() -> Fields:
    return {"name": StorageDomain.name, "id": StorageDomain.id, "status": StorageDomain.status,
            "type": StorageDomain.type, "description": StorageDomain.description,
            **_by_name("datacenter", DataCenter, StorageDomain.data_center_id)}


def _disk_fields() -> Fields:
    vms = _vms_of(lambda vm: select(DiskAttachment.pk).where(
        DiskAttachment.vm_id == vm.id, DiskAttachment.disk_id == Disk.id).exists())
    return {"name": Disk.name, "alias": Disk.name, "id": Disk.id, "status": Disk.status,
            "description": Disk.description, "provisioned_size": Disk.provisioned_size,
            "actual_size": Disk.actual_size, "shareable": Disk.shareable,
            **_by_name("storage", StorageDomain, Disk.storage_domain_id),
            **vms, "vm_names": vms["vm.name"]}


def _event_fields() -> Fields:
    return {"type": AuditEvent.code, "code": AuditEvent.code, "id": AuditEvent.id,
            "severity": AuditEvent.severity, "description": AuditEvent.description,
            "correlation_id": AuditEvent.correlation_id,
            **_by_name("vm", Vm, AuditEvent.vm_id), **_by_name("host", Host, AuditEvent.host_id),
            "vm.id": AuditEvent.vm_id, "host.id": AuditEvent.host_id}


DEFAULTS: dict[type, Fields] = {
    Vm: _vm_fields(), Template: _template_fields(), Host: _host_fields(),
    Cluster: _cluster_fields(), DataCenter: _data_center_fields(), Network: _network_fields(),
    StorageDomain: _storage_domain_fields(), Disk: _disk_fields(), AuditEvent: _event_fields(),
    Job: {"id": Job.id, "status": Job.status, "description": Job.description,
          "correlation_id": Job.correlation_id},
    Tag: {"name": Tag.name, "id": Tag.id, "description": Tag.description},
    User: {"name": User.user_name, "usrname": User.user_name, "id": User.id},
    VnicProfile: {"name": VnicProfile.name, "id": VnicProfile.id,
                  **_by_name("network", Network, VnicProfile.network_id)},
}


def fields_for(entity: Any, own: Fields) -> Fields:
    """The search fields of a listing of `entity`: the defaults, then the listing's own."""
    return {**DEFAULTS.get(entity, {}), **own}
