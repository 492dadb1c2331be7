"""Enrolling nodes: approving them, signing their certificates, handing out broker accounts."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from types import TracebackType
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
# Looks and locks of one announce while its host keeps changing meanwhile (an approval or
# a removal between the look and the lock): the node is then told to ask again.
ANNOUNCE_ATTEMPTS = 3


@dataclass(frozen=True)
class Issued:
    """What a grant hands a node, made before its host's row is locked."""

    certificate: str
    broker: BrokerCredentials | None


_Seen = tuple[object, ...]


def _seen(host: Host | None) -> _Seen | None:
    """What an announce's answer depends on: if any of it changed between the first look
    and the lock, what was issued for the look is discarded and the host looked at again."""
    if host is None:
        return None
    return (host.id, host.status, host.key_fingerprint, host.approved_key_fingerprint,
            host.certificate_fingerprint, host.broker_username)


class _NodeLock:
    """One node's announces one at a time in this process; a node's lock is forgotten once
    no announce of that node holds or wants it."""

    def __init__(self, locks: dict[uuid.UUID, tuple[asyncio.Lock, int]],
                 host_uuid: uuid.UUID) -> None:
        self.locks, self.host_uuid = locks, host_uuid

    async def __aenter__(self) -> None:
        lock, users = self.locks.get(self.host_uuid, (asyncio.Lock(), 0))
        self.locks[self.host_uuid] = (lock, users + 1)
        try:
            await lock.acquire()
        except BaseException:
            self._leave()
            raise

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.locks[self.host_uuid][0].release()
        self._leave()

    def _leave(self) -> None:
        lock, users = self.locks[self.host_uuid]
        if users > 1:
            self.locks[self.host_uuid] = (lock, users - 1)
        else:
            del self.locks[self.host_uuid]


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
        self._node_locks: dict[uuid.UUID, tuple[asyncio.Lock, int]] = {}

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
        # What a grant hands out (a certificate, a broker account: a few calls to the
        # broker's management API) is made with no transaction open, after a first look
        # at the host; its row is then locked only to check that nothing changed since and
        # to write. One node's announces are taken one at a time here, so two of them never
        # make its account at once.
        key = csr_key_fingerprint(request.csr_pem)
        async with self._node_lock(request.host_uuid):
            for _attempt in range(ANNOUNCE_ATTEMPTS):
                seen, issued = await self._prepare(request, key, peer_fingerprint)
                granted = False
                try:
                    grant = await self._locked_announce(request, key, peer_fingerprint,
                                                        seen, issued)
                    granted = grant is not None and issued is not None and \
                        grant.certificate_pem == issued.certificate
                finally:
                    if issued is not None and not granted:
                        await self.discard(request.host_uuid, issued)
                if grant is not None:
                    return grant
        return EnrollmentGrant(status=EnrollmentStatus.PENDING_APPROVAL,
                               message="this host was changed while it was being enrolled; "
                               "ask again")

    def _node_lock(self, host_uuid: uuid.UUID) -> _NodeLock:
        return _NodeLock(self._node_locks, host_uuid)

    async def _locked_announce(self, request: EnrollmentRequest, key: str,
                               peer_fingerprint: str | None, seen: _Seen | None,
                               issued: Issued | None) -> EnrollmentGrant | None:
        """The announce's answer, written under the host's row lock; None when the host
        changed since `seen` (what `issued` was made for): the caller looks again."""
        async with self.db.transaction() as session:
            # Only the host UUID names a host here: a host added by address (no UUID yet)
            # is enrolled by its install job, never by what a request says of itself.
            host = (await session.execute(select(Host).where(
                Host.host_uuid == request.host_uuid).with_for_update())).scalar_one_or_none()
            if _seen(host) != seen:
                return None
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
                if issued is None:
                    return self._current_certificate(host)
                return await self.grant(session, host, request, issued)
            audit.record(session, f"Host {host.name}: refused a certificate request for key "
                         f"{key[:23]}..., which is not the key the administrator approved",
                         code=audit.HOST_ENROLLMENT_REFUSED, severity=LogSeverity.WARNING,
                         host_id=host.id)
            return EnrollmentGrant(
                status=EnrollmentStatus.REJECTED, host_id=host.id,
                message=f"host {host.name} is enrolled or approved with another key; remove "
                "it in the engine to enroll this node again")

    async def _prepare(self, request: EnrollmentRequest, key: str,
                       peer_fingerprint: str | None) -> tuple[_Seen | None, Issued | None]:
        """A first look at the host (no lock), and what a grant would hand it out if the
        host is still as seen once locked: a certificate when the key is approved (or an
        enrolled node renews over mutual TLS with its current one), with a new broker
        account when the node has none yet."""
        async with self.db.transaction() as session:
            host = (await session.execute(select(Host).where(
                Host.host_uuid == request.host_uuid))).scalar_one_or_none()
        if host is None or not _may_certify(host, key):
            return _seen(host), None
        # An enrolled node gets a new certificate only over mutual TLS with its current
        # one (a fresh proof: a CSR can be replayed); else the one it has. Moving off the
        # pre-split CA is no rotation: it happens with rotation off.
        renewal = host.status != HostStatus.INSTALLING
        if renewal and not ((self.rotation or self._on_legacy_ca(host))
                            and peer_fingerprint == host.certificate_fingerprint):
            return _seen(host), None
        account = not renewal or host.broker_username is None
        return _seen(host), await self.issue(request, account=account)

    async def issue(self, request: EnrollmentRequest, *, account: bool = True) -> Issued:
        """The node's certificate and (with `account`, when this engine hands out accounts)
        a new broker account, made with no transaction open; given to `grant`, or to
        `discard` when the host turns out not to be granted."""
        certificate = self.pki.issue_node_certificate(request.csr_pem, request.host_uuid)
        broker = await self.broker_account(request.host_uuid) if account else None
        return Issued(certificate=certificate, broker=broker)

    async def discard(self, host_uuid: uuid.UUID, issued: Issued) -> None:
        """Undo what `issue` made for a host that was not granted: its broker account is
        deleted unless the host holds one (granted meanwhile: the account is that one).
        The certificate was stored nowhere and is dropped."""
        if issued.broker is None or self.broker is None:
            return
        async with self.db.transaction() as session:
            holder = (await session.execute(select(Host.broker_username).where(
                Host.host_uuid == host_uuid))).scalar_one_or_none()
        if holder == issued.broker.username:
            return
        try:
            await self.broker.delete_node_user(host_uuid)
        except Unavailable as exc:  # the sweeper removes it once the host is gone
            log.warning("node %s: the broker account made for an enrollment that did not "
                        "happen could not be removed: %s", host_uuid, exc.detail,
                        extra={"host_id": host_uuid})
        else:
            log.info("node %s was not enrolled: the broker account made for it was removed",
                     host_uuid, extra={"host_id": host_uuid})

    async def broker_account(self, host_uuid: uuid.UUID) -> BrokerCredentials | None:
        """A new broker account for the node, when this engine hands out accounts."""
        return await self.broker.create_node_user(host_uuid) if self.broker else None

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

    async def grant(self, session: AsyncSession, host: Host, request: EnrollmentRequest,
                    issued: Issued, *, connect: bool = True) -> EnrollmentGrant:
        """Record the certificate (and broker account) `issue` made for the node, on its
        host's row locked by the caller; the monitor then brings it up. Nothing slow
        happens here: the row is held for this write only.

        `connect=False` leaves a host being installed `installing`: its install job hands
        the node the certificate itself and calls `connected` once the node took it (the
        monitor would otherwise knock with a certificate the node may never have got)."""
        if host.host_uuid != request.host_uuid:  # a host added by address takes its UUID
            other = (await session.execute(select(Host.name).where(
                Host.host_uuid == request.host_uuid, Host.id != host.id))).scalar_one_or_none()
            if other is not None:
                return EnrollmentGrant(status=EnrollmentStatus.REJECTED, host_id=host.id,
                                       message=f"host {other} already has this node's identity")
        certificate, broker = issued.certificate, issued.broker
        renewal = host.status != HostStatus.INSTALLING
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
