"""Choosing a host for a VM: filter the cluster's hosts, then spread load.

Pure: it works on snapshots of hosts and their committed memory, so the rules are
unit-tested without a database. When nothing fits, the error says why each host
was left out, as oVirt's scheduler does.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from overt.engine.model.errors import NoHostAvailable
from overt.engine.model.status import HostStatus
from overt.engine.scheduler.affinity import AffinityConstraint, refusal, soft_penalty


@dataclass(frozen=True)
class HostLoad:
    host_id: uuid.UUID
    name: str
    status: HostStatus
    memory_mib: int  # physical memory
    committed_mib: int  # memory of the VMs placed on the host
    vm_count: int


@dataclass(frozen=True)
class PlacementRequest:
    vm_name: str
    memory_mib: int
    overcommit_percent: int = 100  # the cluster's memory over-commit
    required_host: uuid.UUID | None = None  # e.g. the host of the VM's local storage
    required_reason: str = ""
    # The VM's placement policy hosts: it runs on one of them (empty: on any host).
    allowed_hosts: frozenset[uuid.UUID] = frozenset()
    leaving_host: uuid.UUID | None = None  # a migration's source: never its destination
    affinity: tuple[AffinityConstraint, ...] = ()  # the rules of the VM's affinity groups


def capacity_mib(host: HostLoad, overcommit_percent: int) -> int:
    return host.memory_mib * overcommit_percent // 100


def free_mib(host: HostLoad, overcommit_percent: int) -> int:
    return capacity_mib(host, overcommit_percent) - host.committed_mib


def place(request: PlacementRequest, hosts: Sequence[HostLoad]) -> HostLoad:
    """The host to run the VM on, or NoHostAvailable listing why each host was filtered."""
    reasons: list[str] = []
    candidates: list[HostLoad] = []
    for host in hosts:
        if request.required_host is not None and host.host_id != request.required_host:
            reasons.append(f"{host.name}: {request.required_reason or 'the VM must run elsewhere'}")
        elif host.host_id == request.leaving_host:
            reasons.append(f"{host.name}: the VM is leaving this host")
        elif request.allowed_hosts and host.host_id not in request.allowed_hosts:
            reasons.append(f"{host.name}: not one of the VM's placement policy hosts")
        elif host.status is not HostStatus.UP:
            reasons.append(f"{host.name}: the host is {host.status.replace('_', ' ')}")
        elif (why := refusal(request.affinity, host.host_id)) is not None:
            reasons.append(f"{host.name}: {why}")
        elif (free := free_mib(host, request.overcommit_percent)) < request.memory_mib:
            capacity = capacity_mib(host, request.overcommit_percent)
            reasons.append(
                f"{host.name}: not enough memory ({free} MiB free of {capacity} MiB at "
                f"{request.overcommit_percent}% over-commit; the VM needs "
                f"{request.memory_mib} MiB)")
        else:
            candidates.append(host)
    if not candidates:
        why = "; ".join(reasons) if reasons else "the cluster has no hosts"
        raise NoHostAvailable(f"Cannot run VM {request.vm_name}. There is no host that satisfies "
                              f"current scheduling constraints: {why}.")
    return max(candidates, key=lambda h: (-soft_penalty(request.affinity, h.host_id),
                                          free_mib(h, request.overcommit_percent),
                                          -h.vm_count, h.name))
