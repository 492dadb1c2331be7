"""Full listings of hosts and VMs written as XML straight from their rows.

A listing of a thousand objects spent most of its time building a dict per object
(`views.host`, `views.vm`) and walking it (`wire.render`), and most of each object is
its actions and links: 14 to 23 small dicts that differ only in the object's id. Here a
listing renders those blocks once, with a stand-in id, and stamps each object's id into
them; the rest of an object is written field by field in its view's order, the rare
nested parts (initialization, placement hosts, custom migration, followed NICs and disk
attachments) through the views and `render.child_xml`.

The views stay the reference: single objects and JSON go through them, and the output
here is the same bytes as `to_xml(root, {item: [view, ...]})`
(tests/unit/engine/api/test_list_xml.py compares them with every field set and unset).
A field added to a view must be added here too; that test fails until it is.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from xml.sax.saxutils import escape

from overt.engine.api import views
from overt.engine.api.context import API_PREFIX
from overt.engine.api.initialization import initialization_view
from overt.engine.api.migration_wire import migration_view
from overt.engine.api.resources import consoles
from overt.engine.api.wire.render import Representation, child_xml, scalar_text
from overt.engine.model.initialization import Initialization
from overt.engine.model.migration_options import MigrationOptions

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
# An id no object has, written where each object's id goes and replaced by it.
_STAND_IN = "ffffffff-ffff-4fff-bfff-fffffffffffe"
MIB = views.MIB


class Stamp:
    """XML written once for the stand-in id, then given each object's id."""

    def __init__(self, xml: str) -> None:
        self.parts = xml.split(_STAND_IN)

    def __call__(self, text_id: str) -> str:
        return text_id.join(self.parts)


def _leaf(tag: str, value: object) -> str:
    """`<tag>value</tag>` as `to_xml` writes a child (nothing for None)."""
    if value is None:
        return ""
    kind = type(value)
    if kind is str:
        text: str = value  # type: ignore[assignment]
    elif kind is int:
        return f"<{tag}>{value}</{tag}>"
    elif kind is bool:
        return f"<{tag}>true</{tag}>" if value else f"<{tag}>false</{tag}>"
    elif isinstance(value, dict | list):
        return child_xml(tag, value)
    else:
        text = scalar_text(value)
    if "&" in text or "<" in text or ">" in text:
        text = escape(text)
    return f"<{tag}>{text}</{tag}>"


def _element(tag: str, inner: str) -> str:
    """A dict's element: `<tag/>` when none of its values was written."""
    return f"<{tag}>{inner}</{tag}>" if inner else f"<{tag}/>"


def _refs(kind: str) -> Callable[[uuid.UUID | None], str]:
    """The reference element `<kind_singular href=.. id=../>` of an id, remembered per
    listing (a listing names the same clusters and templates a thousand times)."""
    memo: dict[uuid.UUID | None, str] = {None: ""}
    tag = {"clusters": "cluster", "templates": "template", "hosts": "host",
           "instancetypes": "instance_type", "storagedomains": "storage_domain"}[kind]

    def ref(object_id: uuid.UUID | None) -> str:
        found = memo.get(object_id)
        if found is None:
            text = views.id_text(object_id)
            found = memo[object_id] = f'<{tag} href="{API_PREFIX}/{kind}/{text}" id="{text}"/>'
        return found
    return ref


def _head(root: str, rep: Representation) -> Stamp:
    """The opening tag and actions of an object of `rep` (written for the stand-in)."""
    xml = child_xml(root, {"href": rep["href"], "id": rep["id"], "actions": rep["actions"],
                           "name": "-"})
    return Stamp(xml[:xml.index("<name>")])


def document(root: str, items: Iterable[str]) -> bytes:
    return "".join([XML_DECLARATION, f"<{root}>", *items, f"</{root}>"]).encode()


# --- hosts ----------------------------------------------------------------------------

# The columns `views.host` reads: a listing leaves out the certificates, CSRs and the
# reported networks, bonds and iSCSI logins (JSON parsed per row, never shown in a list).
HOST_COLUMNS = ("id", "name", "description", "address", "port", "status", "status_detail",
                "memory_mib", "free_memory_mib", "capabilities", "hardware", "host_uuid",
                "certificate_fingerprint", "key_fingerprint", "pm_enabled",
                "kdump_detection", "kdump_status", "cluster_id")


def _hardware_xml(h: Any, facts: dict[str, Any]) -> str:
    if not facts and h.host_uuid is None:
        return ""
    return _element("hardware_information", "".join((
        _leaf("uuid", facts.get("system_uuid")
              or (views.id_text(h.host_uuid) if h.host_uuid else None)),
        _leaf("manufacturer", facts.get("manufacturer") or None),
        _leaf("product_name", facts.get("product_name") or None),
        _leaf("version", facts.get("product_version") or None),
        _leaf("serial_number", facts.get("serial_number") or None),
        _leaf("family", facts.get("family") or None))))


def _cpu_xml(caps: dict[str, Any], facts: dict[str, Any]) -> str:
    source = caps or facts
    topology = _element("topology", "".join((
        _leaf("cores", source.get("cpu_cores")), _leaf("sockets", source.get("cpu_sockets")),
        _leaf("threads", source.get("cpu_threads"))))) if source else ""
    return _element("cpu", _leaf("name", source.get("cpu_model") or None) + topology)


def hosts_xml(hosts: Sequence[Any], vm_counts: dict[Any, int], *, all_content: bool) -> bytes:
    """`<hosts>` of `hosts` (rows with `HOST_COLUMNS`), as `views.host` and `to_xml`."""
    sample = views.host_shape(_STAND_IN)
    head = _head("host", sample)
    links = Stamp(child_xml("link", sample["link"]))
    cluster = _refs("clusters")
    hosted_engine = child_xml("hosted_engine", {"configured": False}) if all_content else ""
    out = []
    for h in hosts:
        text_id = views.id_text(h.id)
        caps: dict[str, Any] = h.capabilities or {}
        facts: dict[str, Any] = h.hardware or {}
        count = vm_counts.get(h.id, 0)
        kernel = caps.get("kernel") if caps else None
        out.append("".join((
            head(text_id), _leaf("name", h.name), _leaf("description", h.description),
            links(text_id),
            _leaf("address", h.address), _leaf("port", h.port), _leaf("status", h.status),
            _leaf("status_detail", h.status_detail or None),
            "<type>rhel</type><external_status>ok</external_status>",
            _leaf("memory", h.memory_mib * MIB),
            _leaf("max_scheduling_memory", h.free_memory_mib * MIB),
            _cpu_xml(caps, facts), _hardware_xml(h, facts),
            _element("libvirt_version", _leaf("full_version", caps.get("libvirt_version")))
            if caps else "",
            "<os><type>Linux</type>" + _element("version", _leaf("full_version", kernel))
            + "</os>" if caps else "",
            f"<summary><active>{count}</active><migrating>0</migrating>"
            f"<total>{count}</total></summary>",
            "<certificate><organization>Overt</organization>"
            + _leaf("subject", f"CN={h.host_uuid}") + "</certificate>"
            if h.certificate_fingerprint else "",
            _element("ssh", _leaf("fingerprint", h.key_fingerprint))
            if h.key_fingerprint else "",
            _element("power_management", _leaf("enabled", h.pm_enabled)
                     + _leaf("kdump_detection", h.kdump_detection)),
            _leaf("kdump_status", h.kdump_status), cluster(h.cluster_id),
            hosted_engine, "</host>")))
    return document("hosts", out)


# --- VMs ------------------------------------------------------------------------------

# The columns `views.vm` and a VM's `display` read (the rest are the engine's own).
VM_COLUMNS = ("id", "name", "description", "comment", "cluster_id", "template_id", "memory_mib",
              "cpu_sockets", "cpu_cores", "cpu_threads", "os_type", "boot_devices", "bios_type",
              "instance_type_id", "initialization", "high_availability",
              "lease_storage_domain_id", "ha_priority", "placement_hosts",
              "placement_affinity", "migration", "migration_downtime_ms", "status", "host_id",
              "origin", "spec_version", "running_spec_version", "vnc_port", "start_time",
              "stop_time", "stop_reason", "created_at", "storage_error_resume_behaviour")


def vms_xml(vms: Sequence[Any], *, addresses: dict[uuid.UUID, str],
            nics: dict[uuid.UUID, list[Representation]] | None,
            disk_attachments: dict[uuid.UUID, list[Representation]] | None,
            virtio_scsi: set[uuid.UUID] | None, extra_links: Sequence[str]) -> bytes:
    """`<vms>` of `vms`, as `resources.vms.vm_views` and `to_xml` write them: the same
    inputs (host addresses of consoles, followed NICs and disk attachments, VMs on
    virtio-scsi when `all_content`, the device links)."""
    sample = views.vm_shape(_STAND_IN, nics=nics is not None,
                            disk_attachments=disk_attachments is not None)
    head = _head("vm", sample)
    links = Stamp(child_xml("link", [*sample["link"],
                                     *views.links(f"{API_PREFIX}/vms/{_STAND_IN}",
                                                  *extra_links)]))
    host, cluster, template = _refs("hosts"), _refs("clusters"), _refs("templates")
    instance_type, domain = _refs("instancetypes"), _refs("storagedomains")
    display = child_xml("display", consoles.display_at(None, None))
    display_open = display.removesuffix("</display>")
    inherited_migration = child_xml("migration", migration_view(MigrationOptions.from_json(None)))
    out = []
    for v in vms:
        text_id = views.id_text(v.id)
        listening = consoles.listens(v) and v.host_id in addresses
        memory = v.memory_mib * MIB
        devices = v.boot_devices
        running = v.running_spec_version
        out.append("".join((
            head(text_id), _leaf("name", v.name), _leaf("description", v.description),
            _leaf("comment", v.comment), links(text_id),
            "<cpu><architecture>x86_64</architecture>",
            _element("topology", _leaf("cores", v.cpu_cores) + _leaf("sockets", v.cpu_sockets)
                     + _leaf("threads", v.cpu_threads)), "</cpu>",
            _leaf("creation_time", v.created_at),
            display_open + _leaf("address", addresses.get(v.host_id))
            + _leaf("port", v.vnc_port) + "</display>" if listening else display,
            f"<lease>{domain(v.lease_storage_domain_id)}</lease>"
            if v.lease_storage_domain_id is not None else "",
            _element("high_availability", _leaf("enabled", v.high_availability)
                     + _leaf("priority", v.ha_priority)),
            _leaf("memory", memory),
            _element("memory_policy", _leaf("guaranteed", memory) + _leaf("max", memory * 4)),
            child_xml("migration", migration_view(MigrationOptions.from_json(v.migration)))
            if v.migration else inherited_migration,
            _leaf("migration_downtime", v.migration_downtime_ms
                  if v.migration_downtime_ms is not None else -1),
            _leaf("origin", "ovirt" if v.origin == "overt" else v.origin),
            "<os><boot><devices>" + "".join([_leaf("device", d) for d in devices])
            + "</devices></boot>" + _leaf("type", v.os_type) + "</os>"
            if all(type(d) is str for d in devices)
            else child_xml("os", {"boot": {"devices": {"device": list(devices)}},
                                  "type": v.os_type}),
            _element("bios", _leaf("type", v.bios_type)),
            instance_type(v.instance_type_id),
            child_xml("initialization",
                      initialization_view(Initialization.from_json(v.initialization)))
            if v.initialization else "",
            child_xml("placement_policy", views.placement_policy(v)) if v.placement_hosts
            else _element("placement_policy", _leaf("affinity", v.placement_affinity)),
            "<stateless>false</stateless>",
            _leaf("storage_error_resume_behaviour", v.storage_error_resume_behaviour),
            "<type>server</type><run_once>false</run_once>",
            _leaf("start_time", v.start_time), _leaf("stop_time", v.stop_time),
            _leaf("status", v.status), _leaf("stop_reason", v.stop_reason or None),
            _leaf("next_run_configuration_exists",
                  running is not None and running < v.spec_version),
            host(v.host_id), cluster(v.cluster_id), template(v.template_id),
            child_xml("nics", {"nic": nics[v.id]}) if nics is not None else "",
            child_xml("disk_attachments", {"disk_attachment": disk_attachments[v.id]})
            if disk_attachments is not None else "",
            "<console><enabled>true</enabled></console><soundcard_enabled>false"
            "</soundcard_enabled>" + _element("virtio_scsi", _leaf("enabled",
                                                                   v.id in virtio_scsi))
            if virtio_scsi is not None else "",
            "</vm>")))
    return document("vms", out)
