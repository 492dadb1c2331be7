"""Reading MAC pool, vNIC profile, cluster network and host network bodies into inputs."""

from __future__ import annotations

import uuid

from overt.engine.api.readers import ref_of
from overt.engine.api.wire.parse import Node
from overt.engine.model.errors import InvalidInput
from overt.engine.services import host_bonds
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
    found: dict[str, tuple[str | None, str | None, str | None, str | None]] = {}
    for assignment in assignments:
        ip = assignment.child("ip")
        version = ip.get_str("version") if ip is not None else None
        address = ip.get_str("address") if ip is not None else None
        if version is None:  # as oVirt: the family follows from the address, else IPv4
            version = "v6" if address and ":" in address else "v4"
        if version not in ("v4", "v6"):
            raise InvalidInput(f"ip.version {version!r} is not v4 or v6")
        found.setdefault(version, (
            assignment.get_str("assignment_method"), address,
            ip.get_str("netmask") if ip is not None else None,
            ip.get_str("gateway") if ip is not None else None))
    method, address, netmask, gateway = found.get("v4", (None, None, None, None))
    method6, address6, prefix6, gateway6 = found.get("v6", (None, None, None, None))
    return AttachmentInput(id=node.get_id(), network=ref_of(node.child("network")),
                           nic=ref_of(node.child("host_nic")), boot_protocol=method,
                           address=address, netmask=netmask, gateway=gateway,
                           ipv6_boot_protocol=method6, ipv6_address=address6,
                           ipv6_prefix=prefix6, ipv6_gateway=gateway6)


def _ids(nodes: list[Node], what: str) -> list[uuid.UUID]:
    ids = []
    for node in nodes:
        found = node.get_id()
        if found is None:
            raise InvalidInput(f"{what} needs the id of each network attachment")
        ids.append(found)
    return ids


def _read_bond(node: Node) -> host_bonds.BondInput:
    bonding = node.child("bonding")
    options: dict[str, str] = {}
    slaves = []
    if bonding is not None:
        for option in bonding.items("options", "option"):
            options[option.get_str("name") or ""] = option.get_str("value") or ""
        slaves = [ref for s in bonding.items("slaves", "host_nic")
                  if (ref := ref_of(s)) is not None]
    return host_bonds.BondInput(id=node.get_id(), name=node.get_str("name"), options=options,
                                slaves=slaves)


def read_setup_networks(node: Node) -> SetupInput:
    return SetupInput(
        modified_bonds=[_read_bond(n) for n in node.items("modified_bonds", "host_nic")],
        removed_bonds=[ref for n in node.items("removed_bonds", "host_nic")
                       if (ref := ref_of(n)) is not None],
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
