"""Enrolling nodes: approving them, signing their certificates, handing out broker accounts."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Protocol

from cryptography import x509
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.database import Database
from overt.engine.db.tables import Cluster, Host
from overt.engine.model.errors import Unavailable
from overt.engine.model.status import HostStatus
from overt.engine.registry.pki import EnginePki
from overt.engine.services import audit
from overt.pki.certs import fingerprint, load_cert
from overt.protocol.enrollment import (
    BrokerCredentials,
    EnrollmentGrant,
    EnrollmentRequest,
    EnrollmentStatus,
)

log = logging.getLogger(__name__)

# Enrollments handled at once: a fleet announcing itself must not take every database
# connection of the api process. The others are told to ask again a little later.
MAX_CONCURRENT_ENROLLMENTS = 8
ENROLLMENT_QUEUE_WAIT_S = 2.0
# Hosts that may wait for approval at once: anyone can announce a node, so more are not
# stored (they are told to ask again once the administrator has dealt with these).
MAX_PENDING_HOSTS = 100


class BrokerAccounts(Protocol):
    """Creates a node's own broker account (fully managed mode)."""

    async def create_node_user(self, host_uuid: uuid.UUID) -> BrokerCredentials: ...

    async def delete_node_user(self, host_uuid: uuid.UUID) -> None: ...


async def _pending_count(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(Host).where(
        Host.status == HostStatus.PENDING_APPROVAL.value))).scalar_one())


def _same_key(csr_pem: str, cert_pem_text: str | None) -> bool:
    if not cert_pem_text:
        return False
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    cert = load_cert(cert_pem_text.encode())
    return csr.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]


class Registry:
    def __init__(self, db: Database, pki: EnginePki, *, gateway_url: str,
                 broker: BrokerAccounts | None = None) -> None:
        self.db = db
        self.pki = pki
        self.gateway_url = gateway_url
        self.broker = broker
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_ENROLLMENTS)

    async def announce(self, request: EnrollmentRequest, peer_fingerprint: str | None = None
                       ) -> EnrollmentGrant:
        """A node asks to join (the gateway's /v1/enroll): pending until approved, then signed.

        An enrolled node asks again with the same key to get a fresh broker account (a
        node added by address through a worker, which holds no broker rights)."""
        try:
            async with asyncio.timeout(ENROLLMENT_QUEUE_WAIT_S):
                await self._slots.acquire()
        except TimeoutError:
            return EnrollmentGrant(status=EnrollmentStatus.PENDING_APPROVAL,
                                   message="the engine is busy enrolling other nodes; ask "
                                   "again later")
        try:
            return await self._announce(request)
        except Unavailable as exc:
            log.warning("node %s cannot be enrolled now: %s", request.host_uuid, exc.detail)
            return EnrollmentGrant(status=EnrollmentStatus.PENDING_APPROVAL,
                                   message=f"the engine cannot finish this node's enrollment "
                                   f"now ({exc.detail}); ask again later")
        finally:
            self._slots.release()

    async def _announce(self, request: EnrollmentRequest) -> EnrollmentGrant:
        # The broker account is made before the host's row is locked: it takes a few calls
        # to the broker, and the node's events wait on that lock meanwhile.
        account = await self.broker_account(request.host_uuid) \
            if await self._grantable(request) else None
        async with self.db.transaction() as session:
            host = (await session.execute(select(Host).where(
                Host.host_uuid == request.host_uuid).with_for_update())).scalar_one_or_none()
            if host is None:
                host = (await session.execute(select(Host).where(
                    Host.address == request.address, Host.host_uuid.is_(None),
                    Host.status == HostStatus.INSTALLING.value).with_for_update())
                ).scalar_one_or_none()
            if host is None:
                if await _pending_count(session) >= MAX_PENDING_HOSTS:
                    log.warning("node %s (%s) announced itself, but %d hosts already wait for "
                                "approval; not recorded", request.host_uuid, request.address,
                                MAX_PENDING_HOSTS)
                    return EnrollmentGrant(
                        status=EnrollmentStatus.PENDING_APPROVAL,
                        message=f"{MAX_PENDING_HOSTS} hosts already wait for approval; ask "
                        "again once an administrator has approved or removed some of them")
                host = await self._new_pending(session, request)
                return self._pending(host)
            if host.status == HostStatus.PENDING_APPROVAL.value:
                host.pending_csr = request.csr_pem
                host.capabilities = request.capabilities.model_dump(mode="json")
                return self._pending(host)
            if host.status == HostStatus.INSTALLING.value or _same_key(request.csr_pem,
                                                                       host.certificate_pem):
                return await self.grant(session, host, request, broker=account)
            return EnrollmentGrant(
                status=EnrollmentStatus.REJECTED, host_id=host.id,
                message=f"host {host.name} is already enrolled with another key; remove it in "
                "the engine to enroll this node again")

    async def broker_account(self, host_uuid: uuid.UUID) -> BrokerCredentials | None:
        """A new broker account for the node, when this engine hands out accounts."""
        return await self.broker.create_node_user(host_uuid) if self.broker else None

    async def _grantable(self, request: EnrollmentRequest) -> bool:
        """Whether announcing would grant (a first look, without locks)."""
        async with self.db.transaction() as session:
            host = (await session.execute(select(Host).where(
                Host.host_uuid == request.host_uuid))).scalar_one_or_none()
        if host is None:
            return False
        return host.status == HostStatus.INSTALLING.value or _same_key(request.csr_pem,
                                                                       host.certificate_pem)

    async def _new_pending(self, session: AsyncSession, request: EnrollmentRequest) -> Host:
        cluster = (await session.execute(select(Cluster).where(Cluster.name == "Default"))
                   ).scalar_one_or_none() or (await session.execute(select(Cluster))).scalars().first()
        if cluster is None:
            raise RuntimeError("the engine has no cluster to put new hosts in")
        name = request.hostname[:200]
        if (await session.execute(select(Host.id).where(Host.name == name))).first() is not None:
            name = f"{name}-{str(request.host_uuid)[:8]}"
        host = Host(id=uuid.uuid4(), name=name, address=request.address, port=request.rpc_port,
                    cluster_id=cluster.id, status=HostStatus.PENDING_APPROVAL.value,
                    host_uuid=request.host_uuid, pending_csr=request.csr_pem,
                    capabilities=request.capabilities.model_dump(mode="json"),
                    memory_mib=request.capabilities.memory_mib)
        session.add(host)
        audit.record(session, f"Host {name} ({request.address}) asks to join; approve it to "
                     "add it", code=audit.HOST_PENDING_APPROVAL, host_id=host.id)
        log.info("node %s (%s) is pending approval", request.host_uuid, request.address)
        return host

    def _pending(self, host: Host) -> EnrollmentGrant:
        return EnrollmentGrant(status=EnrollmentStatus.PENDING_APPROVAL, host_id=host.id,
                               message="waiting for an administrator to approve this host")

    async def grant(self, session: AsyncSession, host: Host, request: EnrollmentRequest, *,
                    broker: BrokerCredentials | None = None) -> EnrollmentGrant:
        """Sign the node's certificate and record who it is; the monitor then brings it up.

        `broker` is the node's account when the caller made it already (outside the lock)."""
        other = (await session.execute(select(Host).where(
            Host.host_uuid == request.host_uuid, Host.id != host.id))).scalar_one_or_none()
        if other is not None:
            return EnrollmentGrant(status=EnrollmentStatus.REJECTED, host_id=host.id,
                                   message=f"host {other.name} already has this node's identity")
        certificate = self.pki.issue_node_certificate(request.csr_pem, request.host_uuid,
                                                      request.address)
        if broker is None:
            broker = await self.broker_account(request.host_uuid)
        caps = request.capabilities
        host.host_uuid, host.address, host.port = request.host_uuid, request.address, request.rpc_port
        host.capabilities = caps.model_dump(mode="json")
        host.memory_mib, host.free_memory_mib = caps.memory_mib, caps.memory_mib
        host.certificate_pem = certificate
        host.certificate_fingerprint = fingerprint(load_cert(certificate.encode()))
        host.pending_csr = None
        host.broker_username = broker.username if broker else None
        host.status, host.needs_resync, host.status_detail = HostStatus.CONNECTING.value, True, ""
        audit.record(session, f"Host {host.name} was enrolled (certificate "
                     f"{host.certificate_fingerprint[:23]}...)", code=audit.HOST_ADDED,
                     host_id=host.id, cluster_id=host.cluster_id)
        return EnrollmentGrant(status=EnrollmentStatus.APPROVED, host_id=host.id,
                               certificate_pem=certificate, ca_pem=self.pki.ca_pem(),
                               gateway_url=self.gateway_url, broker=broker)
