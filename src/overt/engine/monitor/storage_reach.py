"""Whether each host reaches the active storage domains of its data center: the monitor
asks every serving host in turn (a `storage.domains_probe`, oVirt's repoStats), records
the space an NFS export reports, and makes a host that cannot reach a domain non
operational with oVirt's reason `storage_domain_unreachable`, so the scheduler no longer
places VMs on it. It is up again by itself once it reaches every domain.

A host that does not answer at all is not judged here: the heartbeat watch owns that.
Several monitors may probe the same host; each judgement locks the host's row and
reads its status again, so they agree. No transaction is open while the hosts are asked,
and a host's row that another transaction holds is judged at the next round, not waited
for.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from overt.bus.base import TransportError
from overt.engine import audit
from overt.engine.db.database import Database
from overt.engine.db.tables import Cluster, DataCenter, Disk, Host, StorageDomain
from overt.engine.model.host_actions import HostAction, host_action_allowed, status_after
from overt.engine.model.status import HostStatus, LogSeverity, StorageDomainStatus, StorageType
from overt.engine.model.storage_reach import STORAGE_DOMAIN_UNREACHABLE, Strikes
from overt.engine.monitor import paused_vms
from overt.engine.monitor.required_networks import judge_host as judge_networks
from overt.engine.nodes import NodeClient, NodeCommandFailed
from overt.engine.queries.shared_storage import lun_of, lun_ref
from overt.engine.secrets import SecretBox
from overt.protocol.storage import DOMAIN_AREA, NfsExportRef
from overt.protocol.storage_reach import (
    DomainReach,
    DomainsReach,
    ProbeTarget,
    StorageDomainsProbe,
)

log = logging.getLogger(__name__)

_SHARED = (StorageType.NFS, StorageType.ISCSI)
# Probed: active domains, and those the system made inactive (to see them come back).
_PROBED = (StorageDomainStatus.ACTIVE, StorageDomainStatus.INACTIVE)


@dataclass(frozen=True)
class _Probe:
    host: Host
    data_center: str
    domains: dict[uuid.UUID, StorageDomain]  # by the domain's id on storage
    # Direct LUN disks whose size is not known yet: one host reads each LUN's size (the
    # same `qemu-img info` a probe of an iSCSI domain does).
    luns: dict[uuid.UUID, Disk] = field(default_factory=dict)


def storage_id(domain: StorageDomain) -> uuid.UUID:
    return domain.storage_uuid or domain.id


def probe_target(domain: StorageDomain, box: SecretBox | None) -> ProbeTarget:
    if domain.storage_type == StorageType.ISCSI:
        return ProbeTarget(domain_id=storage_id(domain), iscsi=lun_of(domain, box))
    return ProbeTarget(domain_id=storage_id(domain), nfs=NfsExportRef(
        server=domain.address or "", export=domain.path))


class StorageReachMonitor:
    def __init__(self, db: Database, nodes: NodeClient, *, interval_s: float,
                 probe_timeout_s: float = 10.0, strikes: Strikes | None = None,
                 secrets: SecretBox | None = None) -> None:
        self.db = db
        self.secrets = secrets
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
        """One round: every serving host with shared domains, probed at once, then judged
        together: a domain no host reaches is inactive (and its hosts are not blamed)."""
        async with self.db.transaction() as session:
            probes = await _probes(session)
            probes = await _with_unsized_luns(session, probes)
        asked = [p for p in probes if p.domains or p.luns]
        answers = await asyncio.gather(*(self.probe(p) for p in asked))
        reaches = {p.host.id: r for p, r in zip(asked, answers, strict=True) if r is not None}
        answered = {p.host.id: reaches.get(p.host.id) if p.domains or p.luns
                    else DomainsReach(domains=[]) for p in probes}
        async with self.db.transaction() as session:
            # The answering hosts' rows in one statement, in id order as the event batches
            # lock them; one another transaction holds (a batch hearing its node) is judged
            # at the next round rather than waited for.
            held = {host.id: host for host in (await session.execute(select(Host).where(
                Host.id.in_([i for i, r in answered.items() if r is not None]))
                .order_by(Host.id).with_for_update(skip_locked=True, key_share=True))
                ).scalars()}
            seen: list[tuple[_Probe, Host, _Seen]] = []
            for probe in probes:
                reach = answered[probe.host.id]
                if reach is not None:
                    await _record_lun_sizes(session, probe, reach)
                host = None if reach is None else held.get(probe.host.id)
                if reach is not None and host is not None:
                    seen.append((probe, host, await self.observe(session, probe, host, reach)))
            gone = await judge_domains(session, [(p, s) for p, _, s in seen])
            for probe, host, found in seen:
                await judge_host(session, host, probe.data_center,
                                 [(d, why) for d, why in found.cut_off if d.id not in gone])
            to_resume = await paused_vms.resumable(
                session, {host.id: found.reached for _, host, found in seen},
                {host.id: host for _, host, _ in seen})
        # Outside the transaction: a node's answer never holds the hosts' rows.
        await paused_vms.resume(self.db, self.nodes, to_resume,
                                timeout_s=self.probe_timeout_s + 10)

    async def probe(self, probe: _Probe) -> DomainsReach | None:
        command = StorageDomainsProbe(
            domains=[probe_target(d, self.secrets) for d in probe.domains.values()]
            + [ProbeTarget(domain_id=disk.id, iscsi=lun_ref(disk, self.secrets))
               for disk in probe.luns.values()],
            timeout_s=self.probe_timeout_s)
        try:
            return await self.nodes.call(probe.host, command,
                                         timeout_s=self.probe_timeout_s + 10)
        except (TransportError, NodeCommandFailed) as exc:
            log.debug("host %s: no storage probe (%s)", probe.host.name, exc,
                      extra={"host": probe.host.name})
            return None

    async def observe(self, session: AsyncSession, probe: _Probe, host: Host,
                      reach: DomainsReach) -> _Seen:
        """Count the host's misses and record the space seen."""
        self.strikes.forget(host.id, probe.domains)
        found = _Seen()
        for answer in reach.domains:
            known = probe.domains.get(answer.domain_id)
            if known is None:
                continue
            domain = await session.get(StorageDomain, known.id)
            if domain is None or domain.status not in _PROBED:
                continue
            found.answered.append(domain)
            if self.strikes.note(host.id, answer.domain_id, answer.reachable):
                found.cut_off.append((domain, answer.error))
            elif answer.reachable:
                found.reached.add(domain.id)
                await _record_space(session, domain, answer)
        return found


async def _record_space(session: AsyncSession, domain: StorageDomain, answer: DomainReach
                        ) -> None:
    """An NFS export's space as its server reports it; an iSCSI domain's free space is
    the LUN's size now (a LUN grown on the target shows) less its metadata and lease
    areas and what the engine allocated."""
    if answer.total_bytes is None:
        return
    if domain.storage_type == StorageType.NFS and answer.free_bytes is not None:
        domain.available_bytes = answer.free_bytes
        domain.used_bytes = max(0, answer.total_bytes - answer.free_bytes)
    elif domain.storage_type == StorageType.ISCSI:
        # Allocation changes `used_bytes` under this row's lock: read it under the lock too.
        await session.refresh(domain, with_for_update=True)
        domain.available_bytes = max(0, answer.total_bytes - DOMAIN_AREA - domain.used_bytes)


@dataclass
class _Seen:
    """What one host's probe showed: the domains it answered for, reached, is cut off from."""

    answered: list[StorageDomain] = field(default_factory=list)
    reached: set[uuid.UUID] = field(default_factory=set)
    cut_off: list[tuple[StorageDomain, str]] = field(default_factory=list)


async def judge_domains(session: AsyncSession, seen: list[tuple[_Probe, _Seen]]
                        ) -> set[uuid.UUID]:
    """oVirt's rule for a data domain: `inactive` when every host of its data center that
    answered is cut off from it, `active` again once one reaches it. Returns the domains
    inactive now (no host is blamed for those)."""
    answered: dict[uuid.UUID, tuple[StorageDomain, str]] = {}
    for probe, found in seen:
        for domain in found.answered:
            answered[domain.id] = (domain, probe.data_center)
    inactive: set[uuid.UUID] = set()
    for domain_id, (domain, data_center) in answered.items():
        reached_by = [p.host.name for p, f in seen if domain_id in f.reached]
        cut = [(p.host.name, why) for p, f in seen
               for d, why in f.cut_off if d.id == domain_id]
        hosts = sum(1 for _, f in seen if any(d.id == domain_id for d in f.answered))
        if domain.status == StorageDomainStatus.ACTIVE and cut and len(cut) == hosts:
            domain.status = StorageDomainStatus.INACTIVE
            why = "; ".join(f"{name}: {error}" for name, error in cut if error)
            audit.record(session, f"Storage Domain {domain.name} (Data Center {data_center}) "
                         "was deactivated by system because it's not visible by any of the "
                         "hosts." + (f" ({why})" if why else ""),
                         code=audit.STORAGE_DOMAIN_UNREACHABLE, severity=LogSeverity.ERROR,
                         storage_domain_id=domain.id, data_center_id=domain.data_center_id)
            log.warning("no host reaches storage domain %s: inactive", domain.name)
        elif domain.status == StorageDomainStatus.INACTIVE and reached_by:
            domain.status = StorageDomainStatus.ACTIVE
            audit.record(session, f"Storage Domain {domain.name} (Data Center {data_center}) "
                         f"is reached by host {reached_by[0]} again: it is active",
                         code=audit.STORAGE_DOMAIN_REACHED_AGAIN,
                         storage_domain_id=domain.id, data_center_id=domain.data_center_id)
            log.info("storage domain %s is reached again: active", domain.name)
        if domain.status == StorageDomainStatus.INACTIVE:
            inactive.add(domain_id)
    return inactive


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


async def _with_unsized_luns(session: AsyncSession, probes: list[_Probe]) -> list[_Probe]:
    """The direct LUN disks of unknown size, given to the first host probed (any host
    reaches a LUN as well as another: none is judged by it)."""
    unsized = (await session.execute(select(Disk).where(
        Disk.storage_domain_id.is_(None), Disk.lun_path.is_not(None),
        Disk.provisioned_size == 0))).scalars().all()
    if not unsized:
        return probes
    luns = {d.id: d for d in unsized}
    serving = [p for p in probes if p.host.status == HostStatus.UP]
    if serving:
        first = serving[0]
        sized = _Probe(first.host, first.data_center, first.domains, luns)
        return [sized if p is first else p for p in probes]
    found = (await session.execute(select(Host, DataCenter)
                                   .join(Cluster, Cluster.id == Host.cluster_id)
                                   .join(DataCenter, DataCenter.id == Cluster.data_center_id)
                                   .where(Host.host_uuid.is_not(None),
                                          Host.status == HostStatus.UP)
                                   .order_by(Host.name).limit(1))).first()
    if found is None:
        return probes
    host, dc = found
    return [*probes, _Probe(host, dc.name, {}, luns)]  # a host with no domain to judge


async def _record_lun_sizes(session: AsyncSession, probe: _Probe, reach: DomainsReach) -> None:
    """A direct LUN disk's size is its LUN's, as the target reports it (not the client's
    word when it was added)."""
    for answer in reach.domains:
        if answer.domain_id not in probe.luns or not answer.reachable or not answer.total_bytes:
            continue
        disk = await session.get(Disk, answer.domain_id, with_for_update=True)
        if disk is None or disk.provisioned_size:
            continue
        disk.provisioned_size = disk.actual_size = answer.total_bytes
        audit.record(session, f"Direct LUN disk {disk.name} is {answer.total_bytes} bytes, "
                     f"as LUN {disk.lun_path} of {disk.lun_portal} reports",
                     host_id=probe.host.id)


async def _probes(session: AsyncSession) -> list[_Probe]:
    domains = (await session.execute(select(StorageDomain).where(
        StorageDomain.status.in_(_PROBED),
        StorageDomain.storage_type.in_(_SHARED)))).scalars().all()
    # Only the hosts with something to probe, or cut off from a domain: a fleet without
    # shared storage costs no reading of every host every round.
    hosts = (await session.execute(select(Host, Cluster, DataCenter)
                                   .join(Cluster, Cluster.id == Host.cluster_id)
                                   .join(DataCenter, DataCenter.id == Cluster.data_center_id)
                                   .where(Host.host_uuid.is_not(None),
                                          Host.status.in_((HostStatus.UP,
                                                           HostStatus.NON_OPERATIONAL)),
                                          or_(Cluster.data_center_id.in_(
                                              sorted({d.data_center_id for d in domains})),
                                              Host.status_detail
                                              == STORAGE_DOMAIN_UNREACHABLE)))).all()
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
