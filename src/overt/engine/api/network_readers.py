"""Reading MAC pool, vNIC profile, cluster network and host network bodies into inputs."""

from __future__ import annotations

import uuid

from overt.engine.api.readers import ref_of
from overt.engine.api.wire.parse import Node
from overt.engine.model.errors import InvalidInput
from overt.engine.services.host_networks import AttachmentInput, SetupInput
from overt.engine.services.macpools import MacPoolInput
from overt.engine.services.vnic_profiles import ProfileInput


def read_mac_pool(node: Node) -> MacPoolInput:
    ranges_node = node.child("ranges")
    return MacPoolInput(
        name=node.get_str("name"), description=node.get_str("description"),
        allow_duplicates=node.get_bool("allow_duplicates"),
        ranges=[(r.get_str("from"), r.get_str("to")) for r in ranges_node.all("range")]
        if ranges_node is not None else None)


def read_vnic_profile(node: Node) -> ProfileInput:
    nf = node.child("network_filter")
    nf_ref = ref_of(nf)
    props = node.child("custom_properties")
    return ProfileInput(
        name=node.get_str("name"), description=node.get_str("description"),
        network=ref_of(node.child("network")), port_mirroring=node.get_bool("port_mirroring"),
        network_filter=nf_ref if nf_ref is not None and (nf_ref.id or nf_ref.name) else None,
        clear_filter=nf_ref is not None and not (nf_ref.id or nf_ref.name),
        custom_properties={p.get_str("name") or "": p.get_str("value") or ""
                           for p in props.all("custom_property")}
        if props is not None else None)


def _read_attachment(node: Node) -> AttachmentInput:
    assignments = node.items("ip_address_assignments", "ip_address_assignment")
    method = address = netmask = gateway = None
    for assignment in assignments:
        ip = assignment.child("ip")
        if ip is not None and (ip.get_str("version") or "v4") != "v4":
            continue
        method = assignment.get_str("assignment_method")
        if ip is not None:
            address, netmask = ip.get_str("address"), ip.get_str("netmask")
            gateway = ip.get_str("gateway")
        break
    return AttachmentInput(id=node.get_id(), network=ref_of(node.child("network")),
                           nic=ref_of(node.child("host_nic")), boot_protocol=method,
                           address=address, netmask=netmask, gateway=gateway)


def _ids(nodes: list[Node], what: str) -> list[uuid.UUID]:
    ids = []
    for node in nodes:
        found = node.get_id()
        if found is None:
            raise InvalidInput(f"{what} needs the id of each network attachment")
        ids.append(found)
    return ids


def read_setup_networks(node: Node) -> SetupInput:
    return SetupInput(
        modified=[_read_attachment(n) for n in node.items("modified_network_attachments",
                                                          "network_attachment")],
        removed=_ids(node.items("removed_network_attachments", "network_attachment"),
                     "removed_network_attachments"),
        synchronized=_ids(node.items("synchronized_network_attachments",
                                     "network_attachment"),
                          "synchronized_network_attachments"),
        check_connectivity=bool(node.get_bool("check_connectivity")),
        connectivity_timeout_s=node.get_int("connectivity_timeout"),
        commit_on_success=bool(node.get_bool("commit_on_success")))
