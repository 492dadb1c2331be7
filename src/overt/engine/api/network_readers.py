"""Reading MAC pool, vNIC profile, cluster network and host network bodies into inputs."""

from __future__ import annotations

from overt.engine.api.readers import ref_of
from overt.engine.api.wire.parse import Node
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
