"""Enrolling nodes: approving them, signing their certificates, handing out broker accounts."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.database import Database
from overt.engine.db.tables import Cluster, Host
from overt.engine.jobs import overlay_peers
from overt.engine.model.errors import Unavailable
from overt.engine.model.status import HostStatus, LogSeverity
from overt.engine.pki.authority import EnginePki
from overt.engine.services import provisioning
from overt.pki.certs import csr_key_fingerprint, fingerprint, load_cert, same_fingerprint
from overt.pki.expiry import expired
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
        Host.status == HostStatus.PENDING_APPROVAL))).scalar_one())


def _may_certify(host: Host, key: str) -> bool:
    """Whether an announce with `key` gets a certificate: the key an administrator approved
    (host `installing` after approval), or the key already certified (renewal)."""
    if host.status == HostStatus.INSTALLING:
        return same_fingerprint(host.approved_key_fingerprint, key)
    if host.status == HostStatus.PENDING_APPROVAL or not host.certificate_pem:
        return False
    return same_fingerprint(host.key_fingerprint, key)


def _macs(request: EnrollmentRequest) -> list[str]:
    """The node's MACs, the one it booted from first (its provisioning profile's)."""
    facts = request.hardware
    macs = [facts.boot_mac] if facts is not None and facts.boot_mac else []
    macs += [n.mac for n in facts.nics if n.mac] if facts is not None else []
    return macs + [n.mac for n in request.capabilities.nics if n.mac]


def _record_hardware(host: Host, request: EnrollmentRequest) -> None:
    """Keep the facts the node announced (the ones it announced last, while pending)."""
    if request.hardware is not None:
        host.hardware = request.hardware.model_dump(mode="json")


class Registry:
    def __init__(self, db: Database, pki: EnginePki, *, gateway_url: str,
                 broker: BrokerAccounts | None = None, rotation: bool = True) -> None:
        self.db = db
        self.rotation = rotation
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
            return await self._announce(request, peer_fingerprint)
        except ValueError:
            return EnrollmentGrant(status=EnrollmentStatus.REJECTED,
                                   message="the certificate request is not a valid PEM CSR")
        except Unavailable as exc:
            log.warning("node %s cannot be enrolled now: %s", request.host_uuid, exc.detail,
                        extra={"host_id": request.host_uuid})
            return EnrollmentGrant(status=EnrollmentStatus.PENDING_APPROVAL,
                                   message=f"the engine cannot finish this node's enrollment "
                                   f"now ({exc.detail}); ask again later")
        finally:
            self._slots.release()

    async def _announce(self, request: EnrollmentRequest,
                        peer_fingerprint: str | None) -> EnrollmentGrant:
        # The broker account is made before the host's row is locked: it takes a few calls
        # to the broker, and the node's events wait on that lock meanwhile.
        key = csr_key_fingerprint(request.csr_pem)
        account = await self.broker_account(request.host_uuid) \
            if await self._needs_account(request, key, peer_fingerprint) else None
        async with self.db.transaction() as session:
            # Only the host UUID names a host here: a host added by address (no UUID yet)
            # is enrolled by its install job, never by what a request says of itself.
            host = (await session.execute(select(Host).where(
                Host.host_uuid == request.host_uuid).with_for_update())).scalar_one_or_none()
            if host is None:
                if await _pending_count(session) >= MAX_PENDING_HOSTS:
                    log.warning("node %s (%s) announced itself, but %d hosts already wait for "
                                "approval; not recorded", request.host_uuid, request.address,
                                MAX_PENDING_HOSTS, extra={"host_id": request.host_uuid,
                                                          "peer": request.address})
                    return EnrollmentGrant(
                        status=EnrollmentStatus.PENDING_APPROVAL,
                        message=f"{MAX_PENDING_HOSTS} hosts already wait for approval; ask "
                        "again once an administrator has approved or removed some of them")
                host = await self._new_pending(session, request, key)
                return self._pending(host)
            if host.status == HostStatus.PENDING_APPROVAL:
                host.pending_csr, host.key_fingerprint = request.csr_pem, key
                host.capabilities = request.capabilities.model_dump(mode="json")
                host.kdump_status = request.capabilities.kdump_status
                _record_hardware(host, request)
                return self._pending(host)
            if _may_certify(host, key):
                # An enrolled node gets a new certificate only over mutual TLS with its
                # current one (a fresh proof: a CSR can be replayed); else the one it has.
                # Moving off the pre-split CA is no rotation: it happens with rotation off.
                if host.status != HostStatus.INSTALLING and not (
                        (self.rotation or self._on_legacy_ca(host))
                        and peer_fingerprint == host.certificate_fingerprint):
                    return self._current_certificate(host)
                return await self.grant(session, host, request, broker=account)
            audit.record(session, f"Host {host.name}: refused a certificate request for key "
                         f"{key[:23]}..., which is not the key the administrator approved",
                         code=audit.HOST_ENROLLMENT_REFUSED, severity=LogSeverity.WARNING,
                         host_id=host.id)
            return EnrollmentGrant(
                status=EnrollmentStatus.REJECTED, host_id=host.id,
                message=f"host {host.name} is enrolled or approved with another key; remove "
                "it in the engine to enroll this node again")

    async def broker_account(self, host_uuid: uuid.UUID) -> BrokerCredentials | None:
        """A new broker account for the node, when this engine hands out accounts."""
        return await self.broker.create_node_user(host_uuid) if self.broker else None

    async def _needs_account(self, request: EnrollmentRequest, key: str,
                             peer_fingerprint: str | None) -> bool:
        """Whether announcing would grant a node without a broker account yet (a first look,
        without locks); a renewal keeps the account the node has."""
        if self.broker is None:
            return False
        async with self.db.transaction() as session:
            host = (await session.execute(select(Host).where(
                Host.host_uuid == request.host_uuid))).scalar_one_or_none()
        if host is None or not _may_certify(host, key):
            return False
        return host.status == HostStatus.INSTALLING or (
            host.broker_username is None and peer_fingerprint == host.certificate_fingerprint)

    def _on_legacy_ca(self, host: Host) -> bool:
        """Whether the host's certificate is one of the pre-split CA, still accepted."""
        return host.certificate_pem is not None and self.pki.legacy_ca() is not None and \
            self.pki.issued_by_legacy_ca(load_cert(host.certificate_pem.encode()))

    def _current_certificate(self, host: Host) -> EnrollmentGrant:
        """The host's current certificate (`overt pki recover` may have renewed it), or a
        refusal once it has expired: what an enrolled node gets without a renewal."""
        assert host.certificate_pem is not None
        cert = load_cert(host.certificate_pem.encode())
        if expired(cert, self.pki.clock.now()):
            return EnrollmentGrant(
                status=EnrollmentStatus.REJECTED, host_id=host.id,
                message="this node's certificate has expired and cannot be renewed "
                "(rotation off, or not asked with the current certificate): run `overt pki "
                "recover` on the engine")
        return EnrollmentGrant(status=EnrollmentStatus.APPROVED, host_id=host.id,
                               certificate_pem=host.certificate_pem,
                               ca_pem=self.pki.ca_pem(), node_ca_pem=self.pki.node_ca_pem(),
                               node_ca_endorsement=self.pki.node_ca_endorsement(),
                               gateway_url=self.gateway_url)

    async def _new_pending(self, session: AsyncSession, request: EnrollmentRequest,
                           key: str) -> Host:
        profile = await provisioning.for_macs(session, _macs(request))
        cluster = None
        if profile is not None and profile.cluster_id is not None:
            cluster = await session.get(Cluster, profile.cluster_id)
        cluster = cluster or (await session.execute(select(Cluster).where(
            Cluster.name == "Default"))).scalar_one_or_none() or (
            await session.execute(select(Cluster))).scalars().first()
        if cluster is None:
            raise RuntimeError("the engine has no cluster to put new hosts in")
        name = request.hostname[:200]
        if (await session.execute(select(Host.id).where(Host.name == name))).first() is not None:
            name = f"{name}-{str(request.host_uuid)[:8]}"
        host = Host(id=uuid.uuid4(), name=name, address=request.address, port=request.rpc_port,
                    cluster_id=cluster.id, status=HostStatus.PENDING_APPROVAL,
                    host_uuid=request.host_uuid, pending_csr=request.csr_pem,
                    key_fingerprint=key,
                    capabilities=request.capabilities.model_dump(mode="json"),
                    memory_mib=request.capabilities.memory_mib,
                    kdump_status=request.capabilities.kdump_status)
        _record_hardware(host, request)
        session.add(host)
        booted = f" (provisioning profile {profile.name})" if profile is not None else ""
        audit.record(session, f"Host {name} ({request.address}){booted} asks to join with "
                     f"key {key} (into cluster {cluster.name}); approve it to add it if the "
                     "node shows the same key fingerprint",
                     code=audit.HOST_PENDING_APPROVAL, host_id=host.id)
        log.info("node %s (%s) is pending approval", request.host_uuid, request.address,
                 extra={"host": request.hostname, "host_id": request.host_uuid})
        return host

    def _pending(self, host: Host) -> EnrollmentGrant:
        return EnrollmentGrant(status=EnrollmentStatus.PENDING_APPROVAL, host_id=host.id,
                               message="waiting for an administrator to approve this host")

    async def grant(self, session: AsyncSession, host: Host, request: EnrollmentRequest, *,
                    broker: BrokerCredentials | None = None,
                    connect: bool = True) -> EnrollmentGrant:
        """Sign the node's certificate and record who it is; the monitor then brings it up.

        `broker` is the node's account when the caller made it already (outside the lock).
        `connect=False` leaves a host being installed `installing`: its install job hands
        the node the certificate itself and calls `connected` once the node took it (the
        monitor would otherwise knock with a certificate the node may never have got)."""
        other = (await session.execute(select(Host).where(
            Host.host_uuid == request.host_uuid, Host.id != host.id))).scalar_one_or_none()
        if other is not None:
            return EnrollmentGrant(status=EnrollmentStatus.REJECTED, host_id=host.id,
                                   message=f"host {other.name} already has this node's identity")
        certificate = self.pki.issue_node_certificate(request.csr_pem, request.host_uuid)
        renewal = host.status != HostStatus.INSTALLING
        if broker is None and not (renewal and host.broker_username):
            broker = await self.broker_account(request.host_uuid)
        moved = not renewal and host.address != request.address
        if not renewal:
            caps = request.capabilities
            host.host_uuid, host.address, host.port = (request.host_uuid, request.address,
                                                       request.rpc_port)
            host.capabilities = caps.model_dump(mode="json")
            host.kdump_status = caps.kdump_status
            host.memory_mib, host.free_memory_mib = caps.memory_mib, caps.memory_mib
            _record_hardware(host, request)
        host.certificate_pem = certificate
        host.certificate_fingerprint = fingerprint(load_cert(certificate.encode()))
        host.pending_csr, host.enroll_token = None, None
        host.key_fingerprint = host.approved_key_fingerprint = csr_key_fingerprint(
            request.csr_pem)
        if broker is not None:
            host.broker_username = broker.username
        elif not renewal:
            host.broker_username = None
        if renewal:  # an enrolled node renewing its certificate: it stays as it is
            audit.record(session, f"Host {host.name} renewed its certificate (now "
                         f"{host.certificate_fingerprint[:23]}..., until "
                         f"{load_cert(certificate.encode()).not_valid_after_utc:%Y-%m-%d})",
                         code=audit.CERTIFICATE_RENEWED, host_id=host.id,
                         cluster_id=host.cluster_id)
        else:
            if connect:
                self.connected(session, host)
            if moved:  # the other hosts of its overlays tunnel to its new address
                await overlay_peers.rewire(session, None, host,
                                           why=f"host {host.name} moved to {host.address}")
        return EnrollmentGrant(status=EnrollmentStatus.APPROVED, host_id=host.id,
                               certificate_pem=certificate, ca_pem=self.pki.ca_pem(),
                               node_ca_pem=self.pki.node_ca_pem(),
                               node_ca_endorsement=self.pki.node_ca_endorsement(),
                               gateway_url=self.gateway_url, broker=broker)

    @staticmethod
    def connected(session: AsyncSession, host: Host) -> None:
        """The node holds the certificate just granted: the monitor may bring it up."""
        assert host.certificate_fingerprint is not None
        host.status, host.needs_resync, host.status_detail = HostStatus.CONNECTING, True, ""
        audit.record(session, f"Host {host.name} was enrolled (certificate "
                     f"{host.certificate_fingerprint[:23]}...)", code=audit.HOST_ADDED,
                     host_id=host.id, cluster_id=host.cluster_id)
