"""Whether a node reaches the storage domains of its data center: the engine's monitor asks
each host in turn (oVirt's repoStats), the node probes every domain with a short timeout."""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field

from overt.protocol.storage import IscsiLunRef, NfsExportRef
from overt.protocol.vm import WireModel


class ProbeTarget(WireModel):
    """One domain to probe: an NFS export (with the domain's id on storage) or a LUN."""

    domain_id: UUID  # the domain's id on storage (its SD_UUID directory on NFS)
    nfs: NfsExportRef | None = None
    iscsi: IscsiLunRef | None = None


class DomainReach(WireModel):
    """What the node saw of one domain; sizes only when it reached it (and could tell)."""

    domain_id: UUID
    reachable: bool
    error: str = ""
    total_bytes: int | None = None
    free_bytes: int | None = None


class DomainsReach(WireModel):
    domains: list[DomainReach]


class StorageDomainsProbe(WireModel):
    """Probe each domain (its metadata through QEMU's own client): never changes storage."""

    name: Literal["storage.domains_probe"] = "storage.domains_probe"
    result: ClassVar[type[DomainsReach]] = DomainsReach
    mutates: ClassVar[bool] = False
    domains: list[ProbeTarget] = Field(max_length=256)
    timeout_s: float = Field(10, gt=0, le=120)  # per domain
