"""Kdump detection (oVirt's `VdsKdumpDetection`): before a non responsive host is power
fenced, the recovery waits a short time (`kdump_started_timeout_s`) for the fence_kdump
messages its crash kernel sends (recorded by `monitor.kdump_listener`).

A host that sends them crashed: it is `kdumping`, not power fenced (that would cut its dump
short). A fence_kdump message is unauthenticated UDP, though: anyone who can send from the
host's address can forge one while the host is only cut off from the engine and still runs
its VMs. So the messages spare the fence only when every VM on the host has a lease on
shared storage whose expiry proves its copy gone (the recovery waits for that); a host with a
VM no lease covers is fenced without waiting for them. Once its messages stop for longer
than `kdump_finished_timeout_s` its dump is over and it is `non_responsive` again until it
is heard (its kdump configuration reboots it, as oVirt expects; oVirt does not fence it then
either).

The wait is only for a host whose node reports kdump `enabled` (its crash kernel loaded
with fence_kdump targets, `Host.kdump_status`): as oVirt, a host whose status is `disabled`
or `unknown` (an agent that cannot tell, or an older one) sends no message, so it is fenced
at once, with the event that says its kdump is not configured.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from overt.engine import audit
from overt.engine.db.tables import Host, utcnow
from overt.engine.jobs.context import JobContext
from overt.engine.model.host_actions import HostAction, check_host_action, status_after
from overt.engine.model.status import HostStatus, LogSeverity
from overt.engine.queries import lookup
from overt.protocol.host import KdumpStatus

POLL_S = 0.25  # re-reading the host's last fence_kdump message


class Kdump(StrEnum):
    OFF = "off"  # detection off for the host, no listener, or kdump not enabled on it
    NOT_DETECTED = "not_detected"  # no message within the started timeout: fence it
    DETECTED = "detected"  # it is dumping: kdumping, not fenced
    ANSWERED = "answered"  # the host answered again meanwhile


@dataclass(frozen=True)
class Timeouts:
    started_s: float
    finished_s: float

    @classmethod
    def of(cls, ctx: JobContext) -> Timeouts:
        settings = ctx.services.settings
        return cls(float(settings.kdump_started_timeout_s),
                   float(settings.kdump_finished_timeout_s))


def dumping(host: Host, finished_s: float, now: dt.datetime) -> bool:
    """Its last fence_kdump message is recent enough that its dump still runs."""
    last = host.kdump_message_at
    return last is not None and (now - last).total_seconds() <= finished_s


def _why_not(ctx: JobContext, host: Host) -> str | None:
    """Why no fence_kdump message is waited for where the host's own configuration is not
    the cause; None when they may be."""
    if not host.kdump_detection:
        return "its power management's kdump detection is off"
    if not ctx.services.settings.fence_kdump_listener:
        return "the engine runs no fence_kdump listener (fence_kdump_listener=false)"
    return None


async def detect(ctx: JobContext, host: Host, unleased: Sequence[str] = ()) -> Kdump:
    """Wait for the host's fence_kdump messages; on them, mark it kdumping (with the event).
    Not at all (OFF, with the event) where none can come or none would count: detection off
    for the host, no listener, a host whose kdump status is not `enabled`, or VMs on it no
    lease proves gone (`unleased`, their names)."""
    why = _why_not(ctx, host)
    if why is None and host.kdump_status != KdumpStatus.ENABLED:
        async with ctx.transaction() as session:
            audit.record(session, f"Kdump integration is enabled for host {host.name}, but "
                         f"kdump is not configured properly on host (its kdump status is "
                         f"{host.kdump_status}): it is fenced without waiting for fence_kdump "
                         "messages; configure kdump with fence_kdump_nodes on the host and "
                         "refresh its capabilities", code=audit.KDUMP_NOT_CONFIGURED,
                         severity=LogSeverity.WARNING, host_id=host.id,
                         cluster_id=host.cluster_id, job_id=ctx.job.id)
        return Kdump.OFF
    if why is None and unleased:
        why = (f"VM(s) {', '.join(sorted(unleased))} on it have no lease on shared storage, "
               "and a fence_kdump message (unauthenticated) cannot prove their copies gone")
    if why is not None:
        async with ctx.transaction() as session:
            audit.record(session, f"Host {host.name} is fenced without waiting for fence_kdump "
                         f"messages: {why}", code=audit.KDUMP_NOT_DETECTED, host_id=host.id,
                         cluster_id=host.cluster_id, job_id=ctx.job.id)
        return Kdump.OFF
    timeouts = Timeouts.of(ctx)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeouts.started_s
    async with ctx.step(f"Waiting up to {math.ceil(timeouts.started_s)} s for fence_kdump "
                        f"messages of host {host.name} (kdump detection)", host_id=host.id):
        while True:
            async with ctx.transaction() as session:
                current = await lookup.get(session, Host, host.id, for_update=True)
                if current.status != HostStatus.NON_RESPONSIVE:
                    return Kdump.ANSWERED
                if dumping(current, timeouts.finished_s, utcnow()):
                    check_host_action(HostAction.KDUMP, current.status, host_name=host.name)
                    current.status = status_after(HostAction.KDUMP)
                    current.status_detail = f"kdump: fence_kdump messages from {current.kdump_sender}"
                    audit.record(session, f"Kdump flow is in progress on host {host.name}: it "
                                 "crashed and its kdump kernel sends fence_kdump messages "
                                 f"(from {current.kdump_sender}); it is kdumping and is not "
                                 "power fenced; its VMs are down once their leases on shared "
                                 "storage expire",
                                 code=audit.KDUMP_DETECTED, severity=LogSeverity.WARNING,
                                 host_id=host.id, cluster_id=host.cluster_id,
                                 job_id=ctx.job.id)
                    return Kdump.DETECTED
                if loop.time() >= deadline:
                    audit.record(session, f"Kdump flow is not in progress on host {host.name}: "
                                 "no fence_kdump message came within "
                                 f"{timeouts.started_s:g} s; it is fenced as its cluster's "
                                 "fencing policy says", code=audit.KDUMP_NOT_DETECTED,
                                 host_id=host.id, cluster_id=host.cluster_id,
                                 job_id=ctx.job.id)
                    return Kdump.NOT_DETECTED
            await asyncio.sleep(POLL_S)


async def wait_until_finished(ctx: JobContext, host: Host) -> bool:
    """Wait while the host still sends messages; then it is non responsive again (with the
    event). False when it left kdumping otherwise (heard again, or fenced by a user)."""
    timeouts = Timeouts.of(ctx)
    async with ctx.step(f"Waiting for host {host.name} to finish its kdump (no fence_kdump "
                        f"message for {timeouts.finished_s:g} s)", host_id=host.id):
        while True:
            async with ctx.transaction() as session:
                current = await lookup.get(session, Host, host.id, for_update=True)
                if current.status != HostStatus.KDUMPING:
                    return False
                if not dumping(current, timeouts.finished_s, utcnow()):
                    current.status = status_after(HostAction.KDUMP_FINISHED)
                    current.status_detail = "kdump finished"
                    audit.record(session, f"Kdump flow finished on host {host.name}: no "
                                 f"fence_kdump message for {timeouts.finished_s:g} s; it stays "
                                 "non responsive until it answers again (its kdump "
                                 "configuration reboots it); it is not power fenced",
                                 code=audit.KDUMP_FINISHED, severity=LogSeverity.WARNING,
                                 host_id=host.id, cluster_id=host.cluster_id,
                                 job_id=ctx.job.id)
                    return True
            await asyncio.sleep(POLL_S)
