"""libvirt's iSCSI auth secrets for the CHAP credentials of a VM's disks.

A disk over a LUN with CHAP names its secret by usage (`overt.node.storage.chap.secret_id`
of the target) in `<auth>`; the secret is defined private and ephemeral (never written
to disk by libvirt, never readable back through its API) and given its value before the
domain is defined or started, so the password is never in the domain XML.

A secret lives while a domain of this libvirtd names it, or while a VM that will name it
is on its way here (a migration's destination gets the secrets before the VM): `prune`
removes the others once a VM stops or leaves.
"""

from __future__ import annotations

from collections.abc import Set

import libvirt

from overt.node.hypervisor.domain_xml import parse_libvirt_xml
from overt.node.storage.chap import iscsi_credentials
from overt.protocol.vm import ChapAuth

__all__ = ["ensure", "iscsi_credentials", "prune"]

PREFIX = "overtchap"  # `secret_id`'s: the secrets Overt defined


def _xml(usage: str) -> str:
    return ("<secret ephemeral='yes' private='yes'><description>Overt iSCSI CHAP"
            f"</description><usage type='iscsi'><target>{usage}</target></usage></secret>")


def ensure(conn: libvirt.virConnect, credentials: dict[str, ChapAuth]) -> None:
    """Define (or refresh) each secret with its password; blocking (libvirt calls)."""
    for usage, chap in credentials.items():
        try:
            secret = conn.secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_ISCSI, usage)
        except libvirt.libvirtError:
            secret = conn.secretDefineXML(_xml(usage), 0)
        secret.setValue(chap.password.encode(), 0)


def named_secrets(xml: str) -> set[str]:
    """The iSCSI secret usages a domain's XML names in its disks' `<auth>`."""
    return {secret.get("usage", "") for secret in parse_libvirt_xml(xml).iter("secret")
            if secret.get("type") == "iscsi"}


def prune(conn: libvirt.virConnect, keep: Set[str] = frozenset()) -> list[str]:
    """Undefine Overt's iSCSI secrets that no domain here names and that are not in
    `keep` (VMs on their way here); the usages removed. Blocking (libvirt calls)."""
    ours = [s for s in conn.listAllSecrets(0)
            if s.usageType() == libvirt.VIR_SECRET_USAGE_TYPE_ISCSI
            and s.usageID().startswith(PREFIX) and s.usageID() not in keep]
    if not ours:
        return []
    used: set[str] = set()
    for dom in conn.listAllDomains(0):
        try:
            used |= named_secrets(dom.XMLDesc(0))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise  # gone meanwhile: it names nothing any more
    removed = []
    for secret in ours:
        if secret.usageID() not in used:
            secret.undefine()
            removed.append(secret.usageID())
    return removed
