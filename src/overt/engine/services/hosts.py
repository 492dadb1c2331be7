"""Hosts: add by address, install again, approve a node that announced itself, maintenance,
removal."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Cluster, Host, Job, User, Vm
from overt.engine.jobs import overlay_peers
from overt.engine.jobs.kinds import DrainHost, InstallHost
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.model.host_actions import (
    HostAction,
    check_host_action,
    host_action_allowed,
    status_after,
)
from overt.engine.model.node_states import ON_HOST
from overt.engine.model.status import HostStatus, LogSeverity
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref
from overt.engine.services.jobs import JobSubmitter
from overt.engine.services.vm_placement import forget_placement_host
from overt.pki import tokens
from overt.pki.certs import same_fingerprint

DEFAULT_NODE_PORT = 54321
# The job keeps trying until the engine's host_install_timeout_s; this only bounds retries.
INSTALL_ATTEMPTS = 1000


async def vms_on(session: AsyncSession, host_id: uuid.UUID) -> int:
    return int((await session.execute(select(func.count()).select_from(Vm).where(
        Vm.host_id == host_id, Vm.status.in_(ON_HOST)))).scalar_one())


async def add_host(session: AsyncSession, jobs: JobSubmitter, *, name: str | None, address: str,
                   port: int | None, cluster: Ref | None, user: User,
                   fingerprint: str | None = None) -> tuple[Host, str]:
    """Record a host and start enrolling it: the engine calls the node at `address`.

    The install job certifies the node there only if it shows the key `fingerprint` (the
    administrator read it on the node), or proves it holds the one-time enrollment token
    issued here: returned in clear to be shown once; the host keeps only its digest
    (`host.enroll_token`)."""
    if not address:
        raise InvalidInput("host.address is required")
    if fingerprint is not None and len(_hex(fingerprint)) != 64:
        raise InvalidInput("host.ssh.fingerprint must be the node's SHA-256 key fingerprint "
                           "(64 hex digits, colons allowed), as `overt node` logs it")
    name = name or address
    if await lookup.name_taken(session, Host, name):
        raise Conflict(f"Cannot add Host. The name {name!r} is already in use.")
    taken = (await session.execute(select(Host).where(Host.address == address))).scalars().first()
    if taken is not None:
        raise Conflict(f"Cannot add Host. Host {taken.name} already has address {address}.")
    found = await lookup.resolve(session, Cluster, cluster or Ref(name="Default"), "host.cluster")
    token = tokens.new_token()
    host = Host(id=uuid.uuid4(), name=name, address=address, port=port or DEFAULT_NODE_PORT,
                cluster_id=found.id, status=HostStatus.INSTALLING,
                approved_key_fingerprint=_colons(fingerprint) if fingerprint else None,
                enroll_token=tokens.digest(token))
    session.add(host)
    await session.flush()
    await _submit_install(session, jobs, host, user, f"Adding host {name}")
    audit.record(session, f"Host {name} was added by {user.user_name}", code=audit.HOST_ADDED,
                 host_id=host.id, cluster_id=found.id, user_id=user.id)
    return host, token


async def install_host(session: AsyncSession, jobs: JobSubmitter, host_id: uuid.UUID,
                       user: User, *, correlation_id: str | None = None) -> Job:
    """oVirt's `install` action: enroll the host again (after a failed install, or from
    maintenance); a node that kept this engine's certificate is reconnected."""
    host = await lookup.get(session, Host, host_id, for_update=True)
    check_host_action(HostAction.INSTALL, host.status, host_name=host.name)
    host.status, host.status_detail = status_after(HostAction.INSTALL), ""
    job = await _submit_install(session, jobs, host, user, f"Installing host {host.name}",
                                correlation_id=correlation_id)
    audit.record(session, f"Host {host.name} is being installed by {user.user_name}",
                 code=audit.HOST_INSTALLING, host_id=host.id, user_id=user.id, job_id=job.id)
    return job


async def _submit_install(session: AsyncSession, jobs: JobSubmitter, host: Host, user: User,
                          description: str, *, correlation_id: str | None = None) -> Job:
    return await jobs.submit(session, InstallHost(host_id=host.id), description=description,
                             owner_id=user.id, max_attempts=INSTALL_ATTEMPTS,
                             correlation_id=correlation_id)


async def approve_host(session: AsyncSession, host_id: uuid.UUID, user: User,
                       *, cluster: Ref | None = None, fingerprint: str | None = None) -> Host:
    """Accept the key a node announced itself with; only that key is ever certified.

    `fingerprint`, when given, must be the key shown on the host (what the administrator
    compared with the node's log): a node that announced itself with another key since
    is then refused rather than approved unseen."""
    host = await lookup.get(session, Host, host_id, for_update=True)
    check_host_action(HostAction.APPROVE, host.status, host_name=host.name)
    if not host.key_fingerprint:
        raise Conflict(f"Cannot approve host {host.name}: it announced no key to approve.")
    if fingerprint is not None and not same_fingerprint(fingerprint, host.key_fingerprint):
        raise Conflict(f"Cannot approve host {host.name}: it now asks with key "
                       f"{host.key_fingerprint}, not {fingerprint}; compare with the node's "
                       "log before approving.")
    if cluster is not None:
        host.cluster_id = (await lookup.resolve(session, Cluster, cluster, "host.cluster")).id
    host.status = status_after(HostAction.APPROVE)
    host.approved_key_fingerprint = host.key_fingerprint
    audit.record(session, f"Host {host.name} was approved by {user.user_name} for key "
                 f"{host.key_fingerprint}", code=audit.HOST_APPROVED, host_id=host.id,
                 user_id=user.id)
    return host


def _hex(fingerprint: str) -> str:
    return "".join(c for c in fingerprint.upper() if c in "0123456789ABCDEF")


def _colons(fingerprint: str) -> str:
    digits = _hex(fingerprint)
    return ":".join(digits[i:i + 2] for i in range(0, len(digits), 2))


async def deactivate_host(session: AsyncSession, jobs: JobSubmitter, host_id: uuid.UUID,
                          user: User, *, correlation_id: str | None = None) -> Job | None:
    """oVirt's maintenance. A host up that runs VMs is drained first: it is preparing for
    maintenance while a job migrates its VMs away (the job returned); one that runs none,
    or that the engine cannot reach to move them, switches at once (None)."""
    host = await lookup.get(session, Host, host_id, for_update=True)
    if not check_host_action(HostAction.DEACTIVATE, host.status, host_name=host.name):
        return None
    running = await vms_on(session, host.id)
    if running and host_action_allowed(HostAction.DRAIN, host.status):
        job = await jobs.submit(session, DrainHost(host_id=host.id),
                                description=f"Switching host {host.name} to maintenance",
                                owner_id=user.id, correlation_id=correlation_id)
        host.status = status_after(HostAction.DRAIN)
        audit.record(session, f"Host {host.name} is preparing for maintenance, asked by "
                     f"{user.user_name}: its {running} VM(s) migrate to other hosts",
                     code=audit.HOST_PREPARING_FOR_MAINTENANCE, host_id=host.id,
                     cluster_id=host.cluster_id, user_id=user.id, job_id=job.id)
        return job
    if running:
        raise Conflict(f"Cannot switch host {host.name} to maintenance mode: {running} VM(s) "
                       f"still run on it and the host is {host.status.replace('_', ' ')}, so "
                       "they cannot be migrated; stop them first.")
    host.status, host.status_detail = status_after(HostAction.DEACTIVATE), ""
    audit.record(session, f"Host {host.name} was switched to maintenance by {user.user_name}",
                 code=audit.HOST_MAINTENANCE, host_id=host.id, user_id=user.id)
    await overlay_peers.rewire(session, jobs, host, why=f"host {host.name} left (maintenance)",
                               owner_id=user.id)
    return None


async def activate_host(session: AsyncSession, host_id: uuid.UUID, user: User,
                        jobs: JobSubmitter | None = None) -> Host:
    """Leave maintenance; the monitor checks the node at once (it resyncs its state). The
    host joins its overlays again: it and their other hosts get each other's tunnels."""
    host = await lookup.get(session, Host, host_id, for_update=True)
    if not check_host_action(HostAction.ACTIVATE, host.status, host_name=host.name):
        return host
    host.status, host.needs_resync = status_after(HostAction.ACTIVATE), True
    host.status_detail, host.unreachable_since = "", None
    audit.record(session, f"Host {host.name} was activated by {user.user_name}",
                 code=audit.HOST_ACTIVATED, host_id=host.id, user_id=user.id)
    await overlay_peers.rewire(session, jobs, host, why=f"host {host.name} joined (activated)",
                               itself=True, owner_id=user.id)
    return host


async def remove_host(session: AsyncSession, host_id: uuid.UUID, user: User,
                      *, force: bool = False, jobs: JobSubmitter | None = None) -> None:
    host = await lookup.get(session, Host, host_id, for_update=True)
    if not force:
        check_host_action(HostAction.REMOVE, host.status, host_name=host.name)
    if await vms_on(session, host.id):
        raise Conflict(f"Cannot remove host {host.name}: VMs still run on it.")
    audit.record(session, f"Host {host.name} was removed by {user.user_name}",
                 code=audit.HOST_REMOVED, severity=LogSeverity.NORMAL, user_id=user.id)
    overlays = await overlay_peers.overlays_of(session, host.id)
    await forget_placement_host(session, host)
    await session.delete(host)
    await session.flush()  # the other hosts' tunnels leave it out from now on
    await overlay_peers.rewire(session, jobs, host, networks=overlays,
                               why=f"host {host.name} left (removed)", owner_id=user.id)
