"""Overlay networks follow their hosts: every host carrying a VXLAN overlay floods it to the
other hosts that carry it, so when one of them joins or leaves (activated, switched to
maintenance, removed, its address or its attachments changed) the others' tunnel lists
are stale. Each of them gets a job that sets its networks up again with the new list; its
overlay attachments show out of sync until that job has applied them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Host, HostNetworkAttachment, Job, Network
from overt.engine.jobs import queue
from overt.engine.jobs.kinds import AttachmentSnapshot, SetupHostNetworks
from overt.engine.model.status import HostStatus


class Submitter(Protocol):
    """`services.jobs.JobSubmitter` (it wakes the worker), seen from below."""

    async def submit(self, session: AsyncSession, spec: Any, *, description: str,
                     owner_id: uuid.UUID | None = None) -> Job: ...


# A host in these states is no tunnel end: it left the overlay (or never joined it yet).
LEFT = frozenset({HostStatus.MAINTENANCE, HostStatus.PENDING_APPROVAL, HostStatus.INSTALLING,
                  HostStatus.INSTALL_FAILED})
# The hosts whose node the engine can set up again now.
_REWIRABLE = frozenset({HostStatus.UP, HostStatus.NON_OPERATIONAL, HostStatus.INITIALIZING,
                        HostStatus.CONNECTING})


def carries(host: Host) -> bool:
    """Whether `host` is a tunnel end of the overlays attached to it."""
    return host.status not in LEFT


async def overlays_of(session: AsyncSession, host_id: uuid.UUID) -> set[uuid.UUID]:
    """The overlay networks attached to a host."""
    return set((await session.execute(select(Network.id).join(
        HostNetworkAttachment, HostNetworkAttachment.network_id == Network.id).where(
        HostNetworkAttachment.host_id == host_id, Network.vxlan_id.is_not(None)))).scalars())


async def rewire(session: AsyncSession, jobs: Submitter | None, host: Host, *, why: str,
                 networks: Iterable[uuid.UUID] | None = None, itself: bool = False,
                 owner_id: uuid.UUID | None = None) -> list[Job]:
    """Set up again every other host carrying one of `host`'s overlays (`networks`, else
    those attached to it now; and `host` itself with `itself`), because `why`. Their
    overlay attachments are out of sync until their jobs have run."""
    wanted = set(networks) if networks is not None else await overlays_of(session, host.id)
    if not wanted:
        return []
    await session.flush()
    rows = (await session.execute(select(HostNetworkAttachment, Host).join(
        Host, Host.id == HostNetworkAttachment.host_id).where(
        HostNetworkAttachment.network_id.in_(wanted), Host.status.not_in(LEFT))
        .order_by(Host.name))).all()
    targets: dict[uuid.UUID, Host] = {}
    for attachment, peer in rows:
        if peer.id == host.id and not itself:
            continue
        attachment.applied = False  # its tunnel list is stale until a job has run
        if peer.status in _REWIRABLE and peer.host_uuid is not None:
            targets[peer.id] = peer
        # else (not responding...): out of sync until setupnetworks re-syncs it
    made = []
    for peer in targets.values():
        attachments = (await session.execute(select(HostNetworkAttachment).where(
            HostNetworkAttachment.host_id == peer.id))).scalars()
        spec = SetupHostNetworks(host_id=peer.id, peers=False,
                                 previous=tuple(_snapshot(a) for a in attachments))
        description = f"Updating the overlay tunnels of host {peer.name}: {why}"
        if jobs is not None:
            made.append(await jobs.submit(session, spec, description=description,
                                          owner_id=owner_id))
        else:  # a job submitting jobs in a process without a worker: the workers poll
            made.append(await queue.submit(session, spec, description=description,
                                           owner_id=owner_id))
    return made


def _snapshot(a: HostNetworkAttachment) -> AttachmentSnapshot:
    return AttachmentSnapshot(
        id=a.id, network_id=a.network_id, nic_name=a.nic_name, boot_protocol=a.boot_protocol,
        address=a.address, netmask=a.netmask, gateway=a.gateway,
        ipv6_boot_protocol=a.ipv6_boot_protocol, ipv6_address=a.ipv6_address,
        ipv6_prefix=a.ipv6_prefix, ipv6_gateway=a.ipv6_gateway, applied=a.applied,
        committed=a.committed)
