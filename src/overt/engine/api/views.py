"""Representations of the engine's objects as oVirt v4 shapes (see the SDK's readers).

Each view turns database rows into the plain dicts `wire.render` writes as XML or
JSON; links name sub-collections with the SDK's `rel` values.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from typing import Any

from overt.engine.api import served
from overt.engine.api.context import API_PREFIX, href
from overt.engine.api.fencing_wire import fencing_policy_view
from overt.engine.api.initialization import initialization_view
from overt.engine.api.migration_wire import migration_view
from overt.engine.api.wire.render import Representation
from overt.engine.db import tables as t
from overt.engine.model.fencing_policy import FencingPolicy
from overt.engine.model.initialization import Initialization
from overt.engine.model.migration_options import MigrationOptions
from overt.engine.model.overlay import OVERLAY_PROVIDER, OVERLAY_PROVIDER_ID
from overt.engine.services.vnic_profiles import filter_id
from overt.protocol.storage import DOMAIN_AREA

MIB = 1 << 20
ENGINE_VERSION = {"major": 4, "minor": 5}


@functools.lru_cache(maxsize=65536)
def id_text(object_id: uuid.UUID) -> str:
    """`str(object_id)`, remembered: a listing writes the same clusters, templates and hosts
    a thousand times, and formatting a UUID costs more than looking it up."""
    return str(object_id)


def ref(kind: str, object_id: uuid.UUID | None, **extra: Any) -> Representation | None:
    """A reference element: `<cluster id=".." href=".."/>`."""
    if object_id is None:
        return None
    text = id_text(object_id)
    return {"href": f"{API_PREFIX}/{kind}/{text}", "id": text, **extra}


def links(base: str, *rels: str) -> list[Representation]:
    """oVirt's sub-collection links of an object, those the API serves."""
    return [{"href": f"{base}/{rel}", "rel": rel}
            for rel in served.served_under("GET", base, rels)]


def actions(base: str, *verbs: str) -> Representation:
    """oVirt's actions on an object, those the API serves."""
    return {"link": [{"href": f"{base}/{verb}", "rel": verb}
                     for verb in served.served_under("POST", base, verbs)]}


def _version() -> Representation:
    return dict(ENGINE_VERSION)


def data_center(dc: t.DataCenter) -> Representation:
    base = href("datacenters", dc.id)
    return {
        "href": base, "id": str(dc.id),
        "actions": actions(base, "cleanfinishedtasks", "setmaster"),
        "name": dc.name, "description": dc.description,
        "link": links(base, "clusters", "networks", "storagedomains", "permissions", "quotas"),
        "local": dc.local, "status": dc.status, "storage_format": "v5",
        "supported_versions": {"version": [_version()]}, "version": _version(),
    }


def cluster(c: t.Cluster, *, mac_pool_id: uuid.UUID | None = None) -> Representation:
    base = href("clusters", c.id)
    return {
        "href": base, "id": str(c.id), "name": c.name, "description": c.description,
        "link": links(base, "networks", "permissions", "affinitygroups"),
        "cpu": {"architecture": "x86_64", "type": c.cpu_type or None},
        "memory_policy": {"over_commit": {"percent": c.memory_overcommit_percent}},
        "migration": migration_view(MigrationOptions.from_json(c.migration)),
        "fencing_policy": fencing_policy_view(FencingPolicy.from_json(c.fencing_policy)),
        "version": _version(),
        "data_center": ref("datacenters", c.data_center_id),
        "mac_pool": ref("macpools", mac_pool_id),
    }


def host_shape(text_id: str) -> Representation:
    """A host's href, id, actions and links: all that depends on its id alone (listings
    write them once for all, `api.list_xml`)."""
    base = f"{API_PREFIX}/hosts/{text_id}"
    return {
        "href": base, "id": text_id,
        "actions": actions(base, "activate", "approve", "commitnetconfig", "deactivate",
                           "enrollcertificate", "fence", "install", "refresh", "setupnetworks"),
        "link": links(base, "nics", "networkattachments", "statistics", "permissions",
                      "storage", "fenceagents"),
    }


def host(h: t.Host, *, vm_count: int = 0) -> Representation:
    shape = host_shape(id_text(h.id))
    caps: dict[str, Any] = h.capabilities or {}
    return {
        "href": shape["href"], "id": shape["id"], "actions": shape["actions"],
        "name": h.name, "description": h.description,
        "link": shape["link"],
        "address": h.address, "port": h.port, "status": h.status,
        "status_detail": h.status_detail or None,
        "type": "rhel", "external_status": "ok",
        "memory": h.memory_mib * MIB,
        "max_scheduling_memory": h.free_memory_mib * MIB,
        "cpu": _host_cpu(caps, h.hardware or {}),
        "hardware_information": _hardware_information(h),
        "libvirt_version": {"full_version": caps.get("libvirt_version")} if caps else None,
        "os": {"type": "Linux", "version": {"full_version": caps.get("kernel")}} if caps else None,
        "summary": {"active": vm_count, "migrating": 0, "total": vm_count},
        "certificate": {"organization": "Overt", "subject": f"CN={h.host_uuid}"}
        if h.certificate_fingerprint else None,
        # The node's key (pending approval, or certified): compare with the node's log.
        "ssh": {"fingerprint": h.key_fingerprint} if h.key_fingerprint else None,
        "power_management": {"enabled": h.pm_enabled,
                             "kdump_detection": h.kdump_detection},
        # As its node reported it (oVirt's KdumpStatus): only `enabled` is waited for.
        "kdump_status": h.kdump_status,
        "cluster": ref("clusters", h.cluster_id),
    }


def _host_cpu(caps: dict[str, Any], facts: dict[str, Any]) -> Representation:
    """The CPU as the node's capabilities say, else as it announced (a pending host)."""
    source = caps or facts
    return {
        "name": source.get("cpu_model") or None,
        "topology": {"cores": source.get("cpu_cores"), "sockets": source.get("cpu_sockets"),
                     "threads": source.get("cpu_threads")} if source else None,
    }


def _hardware_information(h: t.Host) -> Representation | None:
    """oVirt's HardwareInformation from the DMI facts the node announced."""
    facts: dict[str, Any] = h.hardware or {}
    if not facts and h.host_uuid is None:
        return None
    return {
        "uuid": facts.get("system_uuid") or (str(h.host_uuid) if h.host_uuid else None),
        "manufacturer": facts.get("manufacturer") or None,
        "product_name": facts.get("product_name") or None,
        "version": facts.get("product_version") or None,
        "serial_number": facts.get("serial_number") or None,
        "family": facts.get("family") or None,
    }


def fence_agent(a: t.FenceAgent) -> Representation:
    """oVirt's `agent`; the password is write-only and never rendered."""
    base = f"{href('hosts', a.host_id)}/fenceagents/{a.id}"
    return {
        "href": base, "id": str(a.id),
        "address": a.address, "port": a.port, "username": a.username, "type": a.type,
        "order": a.order, "encrypt_options": False,
        "options": {"option": [{"name": k, "value": str(v)} for k, v in sorted(a.options.items())]}
        if a.options else None,
        "host": ref("hosts", a.host_id),
    }


def vm_shape(text_id: str, *, nics: bool, disk_attachments: bool) -> Representation:
    """A VM's href, id, actions and links (but those of `nics` and `disk_attachments`
    when they are inline): all that depends on its id alone (`api.list_xml`)."""
    base = f"{API_PREFIX}/vms/{text_id}"
    rels = ["diskattachments", "nics", "statistics", "graphicsconsoles", "permissions",
            "snapshots", "cdroms"]
    if nics:
        rels.remove("nics")
    if disk_attachments:
        rels.remove("diskattachments")
    return {
        "href": base, "id": text_id,
        "actions": actions(base, "start", "stop", "shutdown", "reboot", "suspend", "ticket",
                           "migrate", "cancelmigration", "clone", "previewsnapshot",
                           "commitsnapshot", "undosnapshot"),
        "link": links(base, *rels),
    }


def placement_policy(v: t.Vm) -> Representation:
    return {
        "affinity": v.placement_affinity,
        "hosts": {"host": [ref("hosts", uuid.UUID(str(h))) for h in v.placement_hosts]}
        if v.placement_hosts else None,
    }


def vm(v: t.Vm, *, nics: Sequence[Representation] | None = None,
       disk_attachments: Sequence[Representation] | None = None) -> Representation:
    shape = vm_shape(id_text(v.id), nics=nics is not None,
                     disk_attachments=disk_attachments is not None)
    rep: Representation = {
        "href": shape["href"], "id": shape["id"], "actions": shape["actions"],
        "name": v.name, "description": v.description, "comment": v.comment,
        "link": shape["link"],
    }
    rep.update({
        "cpu": {"architecture": "x86_64",
                "topology": {"cores": v.cpu_cores, "sockets": v.cpu_sockets,
                             "threads": v.cpu_threads}},
        "creation_time": v.created_at,
        "display": {"type": "vnc"},
        **({"lease": {"storage_domain": ref("storagedomains", v.lease_storage_domain_id)}}
           if v.lease_storage_domain_id is not None else {}),
        "high_availability": {"enabled": v.high_availability, "priority": v.ha_priority},
        "memory": v.memory_mib * MIB,
        "memory_policy": {"guaranteed": v.memory_mib * MIB, "max": v.memory_mib * MIB * 4},
        "migration": migration_view(MigrationOptions.from_json(v.migration)),
        "migration_downtime": v.migration_downtime_ms if v.migration_downtime_ms is not None
        else -1,
        "origin": "ovirt" if v.origin == "overt" else v.origin,
        "os": {"boot": {"devices": {"device": list(v.boot_devices)}}, "type": v.os_type},
        "bios": {"type": v.bios_type},
        "instance_type": ref("instancetypes", v.instance_type_id),
        "initialization": initialization_view(Initialization.from_json(v.initialization))
        if v.initialization else None,
        "placement_policy": placement_policy(v),
        "stateless": False, "storage_error_resume_behaviour": v.storage_error_resume_behaviour,
        "type": "server",
        "run_once": False,
        "start_time": v.start_time, "stop_time": v.stop_time,
        "status": v.status, "stop_reason": v.stop_reason or None,
        "next_run_configuration_exists": v.running_spec_version is not None
        and v.running_spec_version < v.spec_version,
        "host": ref("hosts", v.host_id),
        "cluster": ref("clusters", v.cluster_id),
        "template": ref("templates", v.template_id),
    })
    if nics is not None:
        rep["nics"] = {"nic": list(nics)}
    if disk_attachments is not None:
        rep["disk_attachments"] = {"disk_attachment": list(disk_attachments)}
    return rep


def nic(n: t.VmNic, *, network_id: uuid.UUID | None = None) -> Representation:
    base = href("vms", n.vm_id, "nics", n.id)
    return {
        "href": base, "id": str(n.id), "name": n.name,
        "link": links(base, "statistics", "reporteddevices"),
        "interface": n.interface, "linked": n.linked, "mac": {"address": n.mac},
        "plugged": n.plugged,
        "network": ref("networks", network_id),
        "vnic_profile": ref("vnicprofiles", n.vnic_profile_id),
        "vm": ref("vms", n.vm_id),
    }


def volume_id(image_path: str, disk_id: uuid.UUID) -> str:
    """oVirt's `image_id`: the id of the volume a disk (or a snapshot of it) reads now."""
    stem = image_path.rsplit("/", 1)[-1].split(".", 1)[0]
    try:
        return str(uuid.UUID(stem))
    except ValueError:
        return str(disk_id)


def disk(d: t.Disk) -> Representation:
    base = href("disks", d.id)
    return {
        "href": base, "id": str(d.id),
        "actions": actions(base, "copy", "export", "move", "refreshlun", "sparsify"),
        "name": d.name, "description": d.description,
        "link": links(base, "permissions", "statistics", "disksnapshots"),
        "actual_size": d.actual_size, "alias": d.name, "content_type": d.content_type,
        "format": d.format, "image_id": volume_id(d.image_path, d.id), "propagate_errors": False,
        "provisioned_size": d.provisioned_size, "shareable": d.shareable, "sparse": d.sparse,
        "status": d.status, "storage_type": "image", "total_size": d.actual_size,
        "wipe_after_delete": False,
        **_disk_storage(d),
    }


def _disk_storage(d: t.Disk) -> Representation:
    """Where the disk is: its storage domain, or (a direct LUN disk) its LUN."""
    if d.storage_domain_id is not None:
        return {"storage_domains": {"storage_domain": [ref("storagedomains",
                                                           d.storage_domain_id)]}}
    portal, path = d.lun_portal or "", d.lun_path or ""
    address, _, port = portal.rpartition(":")
    target, _, number = path.rpartition("/")
    return {"storage_type": "lun", "lun_storage": {"type": "iscsi", "logical_units": {
        "logical_unit": [{"id": number, "address": address, "port": int(port or 3260),
                          "target": target, "lun_mapping": int(number or 0),
                          "size": d.provisioned_size, "username": d.lun_chap_username}]}}}


def disk_attachment(a: t.DiskAttachment, *, owner: str = "vms",
                    inline_disk: t.Disk | None = None) -> Representation:
    owner_id = a.vm_id if owner == "vms" else a.template_id
    base = href(owner, owner_id, "diskattachments", a.disk_id)
    return {
        "href": base, "id": str(a.disk_id), "active": a.active, "bootable": a.bootable,
        "interface": a.interface, "pass_discard": False, "read_only": a.read_only,
        "uses_scsi_reservation": False,
        "disk": disk(inline_disk) if inline_disk is not None else ref("disks", a.disk_id),
        "vm": ref("vms", a.vm_id) if owner == "vms" else None,
        "template": ref("templates", a.template_id) if owner == "templates" else None,
    }


def _iscsi_storage(sd: t.StorageDomain, listed: dict[str, Any] | None) -> Representation:
    """oVirt's `storage` of an iSCSI domain: its volume group (the domain's id on storage)
    of one logical unit, the LUN, with what the hosts' last LUN list saw of it (`listed`:
    the SCSI id as its id, serial, vendor, product, size); without one the LUN's number is
    its id and its size is the domain's."""
    address, _, port = (sd.address or "").rpartition(":")
    target, _, number = sd.path.rpartition("/")
    group = str(sd.storage_uuid or sd.id)
    laid_out = sd.used_bytes + sd.available_bytes
    unit: Representation = {
        "id": number, "address": address, "port": int(port or 3260), "target": target,
        "lun_mapping": int(number or 0), "paths": 1, "status": "used",
        "size": laid_out + DOMAIN_AREA if laid_out else None,
        "username": sd.chap_username, "storage_domain_id": str(sd.id),
        "volume_group_id": group}
    if listed is not None:
        unit.update(id=listed["scsi_id"], size=listed.get("size_bytes", unit["size"]),
                    serial=listed.get("serial") or None,
                    vendor_id=listed.get("vendor") or None,
                    product_id=listed.get("product") or None)
    return {"type": sd.storage_type, "volume_group": {
        "id": group, "logical_units": {"logical_unit": [unit]}}}


def storage_domain(sd: t.StorageDomain,
                   listed_luns: dict[tuple[str, str], dict[str, Any]] | None = None
                   ) -> Representation:
    """A storage domain; `listed_luns` (`queries.shared_storage.listed_luns`) describes
    the LUN of an iSCSI one."""
    base = href("storagedomains", sd.id)
    storage: Representation
    if sd.storage_type == "iscsi":
        storage = _iscsi_storage(sd, (listed_luns or {}).get((sd.address or "", sd.path)))
    else:
        storage = {"type": sd.storage_type, "path": sd.path}
        if sd.address:
            storage["address"] = sd.address
    return {
        "href": base, "id": str(sd.id),
        "actions": actions(base, "isattached", "refreshluns", "updateovfstore"),
        "name": sd.name, "description": sd.description,
        "link": links(base, "disks", "permissions", "templates", "vms", "disksnapshots",
                      "storageconnections"),
        "available": sd.available_bytes, "used": sd.used_bytes, "committed": sd.used_bytes,
        "master": True, "status": sd.status, "storage": storage, "storage_format": "v5",
        "type": sd.type, "backup": False, "discard_after_delete": False,
        "data_centers": {"data_center": [ref("datacenters", sd.data_center_id)]}
        if sd.data_center_id else None,
        "host": ref("hosts", sd.host_id),
    }


def network(n: t.Network, *, cluster_id: uuid.UUID | None = None,
            required: bool = True) -> Representation:
    base = href("networks", n.id) if cluster_id is None else href(
        "clusters", cluster_id, "networks", n.id)
    return {
        "href": base, "id": str(n.id), "name": n.name, "description": n.description,
        "link": links(base, "permissions", "vnicprofiles", "networklabels"),
        "mtu": n.mtu, "required": required, "stp": n.stp,
        "cluster": ref("clusters", cluster_id),
        "usages": {"usage": list(n.usages)},
        "vlan": {"id": n.vlan_id} if n.vlan_id is not None else None,
        "external_provider": {"id": str(OVERLAY_PROVIDER_ID), "name": OVERLAY_PROVIDER}
        if n.vxlan_id is not None else None,
        "data_center": ref("datacenters", n.data_center_id),
    }


def vnic_profile(p: t.VnicProfile) -> Representation:
    base = href("vnicprofiles", p.id)
    return {
        "href": base, "id": str(p.id), "name": p.name, "description": p.description,
        "link": links(base, "permissions"),
        "pass_through": {"mode": "disabled"}, "port_mirroring": p.port_mirroring,
        "custom_properties": {"custom_property": [
            {"name": k, "value": v} for k, v in sorted(p.custom_properties.items())]}
        if p.custom_properties else None,
        "network": ref("networks", p.network_id),
        "network_filter": ref("networkfilters", filter_id(p.network_filter))
        if p.network_filter else None,
    }


def template(tp: t.Template) -> Representation:
    base = href("templates", tp.id)
    return {
        "href": base, "id": str(tp.id),
        "actions": actions(base, "export"),
        "name": tp.name, "description": tp.description,
        "link": links(base, "diskattachments", "nics", "permissions", "graphicsconsoles"),
        "cpu": {"architecture": "x86_64", "topology": {
            "cores": tp.cpu_cores, "sockets": tp.cpu_sockets, "threads": tp.cpu_threads}},
        "creation_time": tp.created_at,
        "memory": tp.memory_mib * MIB,
        "os": {"type": tp.os_type},
        "bios": {"type": tp.bios_type},
        "initialization": initialization_view(Initialization.from_json(tp.initialization))
        if tp.initialization else None,
        "status": tp.status, "type": "server",
        "version": {"version_name": "base version", "version_number": 1,
                    "base_template": ref("templates", tp.id)},
        "cluster": ref("clusters", tp.cluster_id),
    }


def job(j: t.Job) -> Representation:
    base = href("jobs", j.id)
    return {
        "href": base, "id": str(j.id), "actions": actions(base, "clear", "end"),
        "description": j.description, "link": links(base, "steps"),
        "auto_cleared": j.auto_cleared, "end_time": j.end_time, "external": j.external,
        "last_updated": j.last_updated, "start_time": j.start_time, "status": j.status,
        "owner": ref("users", j.owner_id),
    }


def step(s: t.Step) -> Representation:
    base = href("jobs", s.job_id, "steps", s.id)
    return {
        "href": base, "id": str(s.id), "actions": actions(base, "end"),
        "description": s.description, "link": links(base, "statistics"),
        "end_time": s.end_time, "external": False, "number": s.number,
        "progress": s.progress, "start_time": s.start_time, "status": s.status, "type": s.type,
        "execution_host": ref("hosts", s.host_id), "job": ref("jobs", s.job_id),
    }


def event(e: t.AuditEvent) -> Representation:
    return {
        "href": href("events", e.id), "id": str(e.id), "description": e.description,
        "code": e.code, "correlation_id": e.correlation_id, "custom_id": -1,
        "flood_rate": 0, "origin": "oVirt" if e.origin == "overt" else e.origin,
        "severity": e.severity, "time": e.time,
        "cluster": ref("clusters", e.cluster_id), "data_center": ref("datacenters", e.data_center_id),
        "host": ref("hosts", e.host_id), "storage_domain": ref("storagedomains", e.storage_domain_id),
        "user": ref("users", e.user_id), "vm": ref("vms", e.vm_id),
    }


def user(u: t.User) -> Representation:
    name = u.user_name.split("@")[0]
    return {
        "href": href("users", u.id), "id": str(u.id), "name": name,
        "link": links(href("users", u.id), "permissions", "roles", "tags"),
        "domain_entry_id": str(u.id), "namespace": "*", "principal": name,
        "user_name": u.user_name, "domain": {"name": u.domain},
    }
