"""Proofs that the copies of a lost host's VMs are gone: what `RecoverHost` needs before
it marks them down and restarts the highly available ones elsewhere (a VM must never run
twice).

Each proof is a small async function: given the lost host, what fencing did, and the VMs
that the engine last saw there, it returns the VMs it proves gone, each with the reason said
in their events. A proof that cannot tell returns nothing: a VM no proof covers stays
`unknown`. The set is `proofs()`: a fence that succeeded, the BMC reporting power off, and
per VM a lease on shared storage that has expired. A host found kdumping (its crash
kernel's fence_kdump messages) is not fenced, but its messages prove nothing (they are
unauthenticated UDP): its VMs are proven gone by their leases alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from overt.engine.db.tables import Host
from overt.engine.jobs.context import JobContext
from overt.engine.queries import vm_lease_expired, vm_lease_expires_in

# What a proof found: VM id -> why its copy on the lost host is gone.
Proven = dict[uuid.UUID, str]


@dataclass(frozen=True)
class FenceOutcome:
    """What fencing the host did: `fence_type` None when it was not fenced; `power`, the
    power status its BMC reported after the action; `error`, why it failed."""

    fence_type: str | None = None
    succeeded: bool = False
    power: str | None = None
    error: str | None = None


# (job context, lost host, fence outcome, VM ids last seen on it) -> the VMs proven gone.
Proof = Callable[[JobContext, Host, FenceOutcome, Collection[uuid.UUID]], Awaitable[Proven]]
# Asks the host's power management for its power status now ("on", "off"); None when it
# cannot be asked (no power management) or does not answer.
PowerStatus = Callable[[], Awaitable[str | None]]


async def fence_succeeded(_ctx: JobContext, host: Host, outcome: FenceOutcome,
                          vm_ids: Collection[uuid.UUID]) -> Proven:
    """A stop, or a restart (off, then on), that the fence agent carried out: every process
    of the host's previous power cycle is gone."""
    if not outcome.succeeded or outcome.fence_type not in ("stop", "restart"):
        return {}
    why = f"host {host.name} was fenced (power management {outcome.fence_type} succeeded)"
    return dict.fromkeys(vm_ids, why)


def bmc_reports_off(power_status: PowerStatus) -> Proof:
    """The host's BMC says its power is off now (it lost power, or a fence that reported
    an error turned it off anyway)."""
    async def proof(_ctx: JobContext, host: Host, outcome: FenceOutcome,
                    vm_ids: Collection[uuid.UUID]) -> Proven:
        if outcome.power == "off":
            status: str | None = "off"
        else:
            status = await power_status()
        if status != "off":
            return {}
        return dict.fromkeys(vm_ids, f"the power management of host {host.name} reports "
                                     "its power off")
    return proof


async def lease_expired(ctx: JobContext, host: Host, _outcome: FenceOutcome,
                        vm_ids: Collection[uuid.UUID]) -> Proven:
    """The VM's lease on shared storage was last renewed longer ago than its timeout: the
    lost host's lease keeper has stopped that copy (it does so before the lease expires),
    and any new holder must acquire the lease first."""
    found: Proven = {}
    async with ctx.transaction() as session:
        for vm_id in vm_ids:
            if await vm_lease_expired(session, vm_id):
                found[vm_id] = (f"its lease on shared storage expired (host {host.name} "
                                "stopped renewing it)")
    return found


async def lease_waits(ctx: JobContext, vm_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, float]:
    """The VMs whose lease will expire from what is known (a holder reported it), with the
    seconds left: a recovery waits that long for the lease proof instead of leaving them
    unknown (the lost host's keeper stops its copy before then)."""
    waits: dict[uuid.UUID, float] = {}
    async with ctx.transaction() as session:
        for vm_id in vm_ids:
            left = await vm_lease_expires_in(session, vm_id)
            if left is not None:
                waits[vm_id] = left
    return waits


def proofs(power_status: PowerStatus) -> tuple[Proof, ...]:
    """The proofs a recovery tries, in order."""
    return (fence_succeeded, bmc_reports_off(power_status), lease_expired)


async def prove_gone(ctx: JobContext, host: Host, outcome: FenceOutcome,
                     vm_ids: Collection[uuid.UUID], power_status: PowerStatus) -> Proven:
    """The VMs of `vm_ids` some proof covers, with the first proof's reason for each."""
    found: Proven = {}
    for proof in proofs(power_status):
        left = [vm_id for vm_id in vm_ids if vm_id not in found]
        if not left:
            break
        for vm_id, why in (await proof(ctx, host, outcome, left)).items():
            found.setdefault(vm_id, why)
    return found


def as_result(outcome: FenceOutcome) -> dict[str, Any]:
    return {"fence_type": outcome.fence_type, "fence_succeeded": outcome.succeeded,
            "power": outcome.power, "fence_error": outcome.error}
