"""Whether each host reaches the active storage domains of its data center: the monitor
asks every serving host in turn (a `storage.domains_probe`, oVirt's repoStats), records
the space an NFS export reports, and makes a host that cannot reach a domain non
operational with oVirt's reason `storage_domain_unreachable`, so the scheduler no longer
places VMs on it. It is up again by itself once it reaches every domain.

A host that does not answer at all is not judged here: the heartbeat watch owns that.
Several monitors may probe the same host; each judgement locks the host's row and
reads its status again, so they agree.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from overt.bus.base import TransportError
from overt.engine import audit
from overt.engine.db.database import Database
from overt.engine.db.tables import Cluster, DataCenter, Host, StorageDomain
from overt.engine.model.host_actions import HostAction, host_action_allowed, status_after
from overt.engine.model.status import HostStatus, LogSeverity, StorageDomainStatus, StorageType
from overt.engine.model.storage_reach import STORAGE_DOMAIN_UNREACHABLE, Strikes
from overt.engine.monitor.required_networks import judge_host as judge_networks
from overt.engine.nodes import NodeClient, NodeCommandFailed
from overt.engine.queries.shared_storage import lun_of
from overt.protocol.storage import NfsExportRef
from overt.protocol.storage_reach import DomainsReach, ProbeTarget, StorageDomainsProbe

log = logging.getLogger(__name__)

_SHARED = (StorageType.NFS, StorageType.ISCSI)


@dataclass(frozen=True)
class _Probe:
    host: Host
    data_center: str
    domains: dict[uuid.UUID, StorageDomain]  # by the domain's id on storage


def storage_id(domain: StorageDomain) -> uuid.UUID:
    return domain.storage_uuid or domain.id


def probe_target(domain: StorageDomain) -> ProbeTarget:
    if domain.storage_type == StorageType.ISCSI:
        return ProbeTarget(domain_id=storage_id(domain), iscsi=lun_of(domain))
    return ProbeTarget(domain_id=storage_id(domain), nfs=NfsExportRef(
        server=domain.address or "", export=domain.path))


class StorageReachMonitor:
    def __init__(self, db: Database, nodes: NodeClient, *, interval_s: float,
                 probe_timeout_s: float = 10.0, strikes: Strikes | None = None) -> None:
        self.db = db
        self.nodes = nodes
        self.interval_s = interval_s
        self.probe_timeout_s = probe_timeout_s
        self.strikes = strikes or Strikes()

    async def run(self) -> None:
        while True:
            try:
                await self.probe_all()
            except OperationalError as exc:
                log.warning("monitor cannot reach the database (%s); retrying", exc.orig)
            await asyncio.sleep(self.interval_s)

    async def probe_all(self) -> None:
        """One round: every serving host with active shared domains, probed at once."""
        async with self.db.transaction() as session:
            probes = await _probes(session)
            for probe in [p for p in probes if not p.domains]:
                await self.apply(session, probe, DomainsReach(domains=[]))
        await asyncio.gather(*(self.probe(p) for p in probes if p.domains))

    async def probe(self, probe: _Probe) -> None:
        command = StorageDomainsProbe(
            domains=[probe_target(d) for d in probe.domains.values()],
            timeout_s=self.probe_timeout_s)
        try:
            reach = await self.nodes.call(probe.host, command,
                                          timeout_s=self.probe_timeout_s + 10)
        except (TransportError, NodeCommandFailed) as exc:
            log.debug("host %s: no storage probe (%s)", probe.host.name, exc,
                      extra={"host": probe.host.name})
            return
        async with self.db.transaction() as session:
            await self.apply(session, probe, reach)

    async def apply(self, session: AsyncSession, probe: _Probe, reach: DomainsReach) -> None:
        """Record the space seen and judge the host on what it could not reach."""
        host = (await session.execute(select(Host).where(Host.id == probe.host.id)
                                      .with_for_update())).scalar_one_or_none()
        if host is None:
            return
        self.strikes.forget(host.id, probe.domains)
        cut_off: list[tuple[StorageDomain, str]] = []
        for seen in reach.domains:
            known = probe.domains.get(seen.domain_id)
            if known is None:
                continue
            domain = await session.get(StorageDomain, known.id)
            if domain is None or domain.status != StorageDomainStatus.ACTIVE:
                continue
            if self.strikes.note(host.id, seen.domain_id, seen.reachable):
                cut_off.append((domain, seen.error))
            elif seen.reachable and seen.total_bytes is not None \
                    and seen.free_bytes is not None and domain.storage_type == StorageType.NFS:
                domain.available_bytes = seen.free_bytes
                domain.used_bytes = max(0, seen.total_bytes - seen.free_bytes)
        await judge_host(session, host, probe.data_center, cut_off)


async def judge_host(session: AsyncSession, host: Host, data_center: str,
                     cut_off: list[tuple[StorageDomain, str]]) -> None:
    """Non operational while `cut_off` names a domain; up again once it names none."""
    if cut_off and host_action_allowed(HostAction.LOSE_STORAGE, host.status):
        names = ", ".join(d.name for d, _ in cut_off)
        why = "; ".join(f"{d.name}: {error}" for d, error in cut_off if error)
        host.status = status_after(HostAction.LOSE_STORAGE)
        host.status_detail = STORAGE_DOMAIN_UNREACHABLE
        audit.record(session, f"Host {host.name} cannot access the Storage Domain(s) {names} "
                     f"attached to the Data Center {data_center}. Setting Host state to "
                     f"Non-Operational." + (f" ({why})" if why else ""),
                     code=audit.HOST_STORAGE_UNREACHABLE, severity=LogSeverity.ERROR,
                     host_id=host.id, cluster_id=host.cluster_id,
                     storage_domain_id=cut_off[0][0].id)
        log.warning("host %s cannot reach storage domain(s) %s: non operational", host.name,
                    names, extra={"host": host.name})
    elif not cut_off and host.status == HostStatus.NON_OPERATIONAL and \
            host.status_detail == STORAGE_DOMAIN_UNREACHABLE:
        host.status, host.status_detail = status_after(HostAction.RECOVER), ""
        audit.record(session, f"Host {host.name} reaches every active storage domain of the "
                     f"Data Center {data_center} again: it is up", code=audit.HOST_UP,
                     host_id=host.id, cluster_id=host.cluster_id)
        log.info("host %s reaches its storage again: up", host.name, extra={"host": host.name})
        await judge_networks(session, host)


async def _probes(session: AsyncSession) -> list[_Probe]:
    hosts = (await session.execute(select(Host, Cluster, DataCenter)
                                   .join(Cluster, Cluster.id == Host.cluster_id)
                                   .join(DataCenter, DataCenter.id == Cluster.data_center_id)
                                   .where(Host.host_uuid.is_not(None),
                                          Host.status.in_((HostStatus.UP,
                                                           HostStatus.NON_OPERATIONAL))))).all()
    domains = (await session.execute(select(StorageDomain).where(
        StorageDomain.status == StorageDomainStatus.ACTIVE,
        StorageDomain.storage_type.in_(_SHARED)))).scalars().all()
    probes = []
    for host, cluster, dc in hosts:
        if host.status == HostStatus.NON_OPERATIONAL and \
                host.status_detail != STORAGE_DOMAIN_UNREACHABLE:
            continue  # non operational for another reason: that reason's judge owns it
        own = {storage_id(d): d for d in domains if d.data_center_id == cluster.data_center_id}
        # One cut off from a domain no longer active has nothing left to reach: judged as is.
        if own or host.status == HostStatus.NON_OPERATIONAL:
            probes.append(_Probe(host, dc.name, own))
    return probes
