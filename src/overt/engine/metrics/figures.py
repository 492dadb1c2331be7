"""The fleet's figures for a scrape, read with a handful of aggregate queries.

A scrape costs the same few statements whatever the fleet's size (hosts, VMs on
hosts, VM and job counts): never a query per host or per VM, so a scrape of
1,000 hosts and 20,000 VMs stays cheap (`bench/metrics_scrape.py`). The values
are the ones the API shows: a host's used memory is its newest stats sample's (as
`/hosts/ID/statistics` says), a VM's CPU and memory those of its row, which the
monitor's stats writer keeps current.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Host, Job, StatsSample, Vm, utcnow
from overt.engine.model.host_actions import MONITORED
from overt.engine.model.status import HostStatus

MIB = 1 << 20


@dataclass(frozen=True)
class HostFigures:
    id: uuid.UUID
    name: str
    status: HostStatus
    cpu_percent: float
    memory_total_bytes: int
    memory_used_bytes: int
    memory_free_bytes: int
    # Seconds since the monitor last applied an event of this host; None when the host is
    # not monitored (maintenance, pending approval, ...) or was never heard.
    last_event_age_s: float | None


@dataclass(frozen=True)
class VmFigures:
    id: uuid.UUID
    name: str
    host: str
    cpu_percent: float
    memory_installed_bytes: int
    memory_used_bytes: int


@dataclass(frozen=True)
class FleetFigures:
    hosts: list[HostFigures]
    vms_by_status: dict[str, int]
    running_vms: list[VmFigures]  # VMs on a host: the ones with CPU and memory figures
    jobs_by_status: dict[str, int]
    jobs_queued: int
    read_at: dt.datetime = field(default_factory=utcnow)

    @property
    def hosts_by_status(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for host in self.hosts:
            counts[host.status.value] = counts.get(host.status.value, 0) + 1
        return counts


async def read_fleet_figures(session: AsyncSession) -> FleetFigures:
    """Four statements: hosts (with their newest sample), running VMs, VM counts, job counts."""
    now = utcnow()
    jobs_by_status, jobs_queued = await _job_counts(session)
    return FleetFigures(hosts=await _hosts(session, now), vms_by_status=await _vm_counts(session),
                        running_vms=await _running_vms(session), jobs_by_status=jobs_by_status,
                        jobs_queued=jobs_queued, read_at=now)


async def _hosts(session: AsyncSession, now: dt.datetime) -> list[HostFigures]:
    # The newest sample of each host by a correlated subquery: one index probe per host
    # (ix_stats_subject_time), on SQLite and PostgreSQL alike.
    newest_used = (select(StatsSample.memory_used_mib)
                   .where(StatsSample.subject_id == Host.id)
                   .order_by(StatsSample.time.desc()).limit(1)
                   .correlate(Host).scalar_subquery())
    rows = (await session.execute(select(
        Host.id, Host.name, Host.status, Host.cpu_percent, Host.memory_mib,
        Host.free_memory_mib, Host.last_heartbeat_at, newest_used).order_by(Host.name))).all()
    hosts = []
    for host_id, name, status, cpu, total_mib, free_mib, heard_at, used_mib in rows:
        total, free = total_mib * MIB, free_mib * MIB
        used = used_mib * MIB if used_mib is not None else max(total - free, 0)
        age = (max((now - heard_at).total_seconds(), 0.0)
               if heard_at is not None and status in MONITORED else None)
        hosts.append(HostFigures(id=host_id, name=name, status=HostStatus(status),
                                 cpu_percent=cpu, memory_total_bytes=total,
                                 memory_used_bytes=used, memory_free_bytes=free,
                                 last_event_age_s=age))
    return hosts


async def _running_vms(session: AsyncSession) -> list[VmFigures]:
    rows = (await session.execute(
        select(Vm.id, Vm.name, Host.name, Vm.cpu_percent, Vm.memory_mib, Vm.memory_used_mib)
        .join(Host, Vm.host_id == Host.id).order_by(Vm.name))).all()
    vms = []
    for vm_id, name, host, cpu, installed_mib, used_mib in rows:
        installed = installed_mib * MIB
        used = min(used_mib * MIB, installed) if installed else used_mib * MIB  # as the API
        vms.append(VmFigures(id=vm_id, name=name, host=host, cpu_percent=cpu,
                             memory_installed_bytes=installed, memory_used_bytes=used))
    return vms


async def _vm_counts(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Vm.status, func.count()).group_by(Vm.status))
    return {str(status): count for status, count in rows.all()}


async def _job_counts(session: AsyncSession) -> tuple[dict[str, int], int]:
    """Jobs by oVirt status, and those waiting for a worker (new, or waiting for a retry)."""
    rows = await session.execute(select(Job.status, Job.state, func.count())
                                 .group_by(Job.status, Job.state))
    by_status: dict[str, int] = {}
    queued = 0
    for status, state, count in rows.all():
        by_status[str(status)] = by_status.get(str(status), 0) + count
        queued += count if state == "queued" else 0
    return by_status, queued
