"""libvirt's iSCSI auth secrets for the CHAP credentials of a VM's disks.

A disk over a LUN with CHAP names its secret by usage (`overt.node.storage.chap.secret_id`
of the target) in `<auth>`; the secret is defined private and ephemeral (never written
to disk by libvirt, never readable back through its API) and given its value before the
domain is defined or started, so the password is never in the domain XML."""

from __future__ import annotations

from collections.abc import Iterator

import libvirt

from overt.node.storage.chap import secret_id
from overt.protocol.vm import ChapAuth, DiskSource, IscsiSource, VmSpec


def iscsi_credentials(spec: VmSpec) -> dict[str, ChapAuth]:
    """The CHAP credentials of the VM's disks, by libvirt usage name."""
    def sources() -> Iterator[DiskSource]:
        for disk in spec.disks:
            yield disk.source
            if disk.backing is not None:
                yield disk.backing
            yield from (layer.source for layer in disk.chain)
    return {secret_id(s.target): s.chap for s in sources()
            if isinstance(s, IscsiSource) and s.chap is not None}


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
