"""Host jobs: installing a host (enrolling it by address, or again after a failure).

An agent's first start can take a while (libvirt probes QEMU, the agent probes the
CPU), so the job keeps knocking, with a short backoff, until the engine's
`host_install_timeout_s` since the job was submitted has passed; only then is the
host `install_failed`. A node that is enrolled with this engine already (a host
installed again from maintenance, or a restarted all-in-one) is reconnected, not
enrolled twice.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from overt.bus.base import TransportError
from overt.engine import audit
from overt.engine.db.tables import Host, utcnow
from overt.engine.jobs.context import JobContext, Unit
from overt.engine.jobs.errors import JobFailed, RetryLater
from overt.engine.jobs.kinds import InstallHost, JobSpec
from overt.engine.model.errors import Unavailable
from overt.engine.model.status import HostStatus, LogSeverity
from overt.engine.queries import lookup
from overt.pki import tokens
from overt.pki.certs import same_fingerprint
from overt.protocol.commands import HostCapabilitiesCommand
from overt.protocol.enrollment import EngineIntroduction, EnrollmentRequest, EnrollmentStatus
from overt.protocol.host import HostCapabilities

# Between two knocks at an agent that does not answer yet: short, it may be starting.
RETRY_CAP_S = 5.0


def _trying_for(ctx: JobContext) -> float:
    started = ctx.job.start_time
    if started.tzinfo is None:
        started = started.replace(tzinfo=dt.UTC)
    return (utcnow() - started).total_seconds()


def _retry_or_fail(ctx: JobContext, message: str) -> RetryLater | JobFailed:
    limit = float(ctx.services.settings.host_install_timeout_s)
    if _trying_for(ctx) < limit:
        return RetryLater(message, max_delay_s=RETRY_CAP_S)
    return JobFailed(f"{message} (gave up after {limit:g} s)")


async def install_host(ctx: JobContext, spec: InstallHost) -> dict[str, Any]:
    host_id = spec.host_id
    async with ctx.transaction() as session:
        host = await lookup.get(session, Host, host_id)
    if host.status != HostStatus.INSTALLING:
        return {"status": host.status}  # enrolled already (a retried job, or the node announced)
    if host.host_uuid is not None and host.certificate_pem and await _reconnect(ctx, host):
        return {"host_uuid": str(host.host_uuid), "reconnected": True}
    return await _enroll(ctx, host)


async def _reconnect(ctx: JobContext, host: Host) -> bool:
    """A node this engine enrolled before: if it answers with its certificate, bring it up."""
    try:
        caps = await ctx.nodes.call(host, HostCapabilitiesCommand(), HostCapabilities,
                                    timeout_s=15)
    except TransportError:
        return False  # not reachable with its certificate: enroll it afresh
    if caps.host_uuid != host.host_uuid:
        return False
    async with ctx.step(f"Reconnecting host {host.name} (enrolled already)"), \
            ctx.transaction() as session:
        fresh = await lookup.get(session, Host, host.id, for_update=True)
        if fresh.status != HostStatus.INSTALLING:
            return True
        fresh.capabilities = caps.model_dump(mode="json")
        fresh.kdump_status = caps.kdump_status
        fresh.status, fresh.needs_resync, fresh.status_detail = (
            HostStatus.CONNECTING, True, "")
        audit.record(session, f"Host {fresh.name} was installed again (it kept its "
                     "certificate)", code=audit.HOST_ACTIVATED, host_id=fresh.id,
                     cluster_id=fresh.cluster_id)
    return True


async def _enroll(ctx: JobContext, host: Host) -> dict[str, Any]:
    registry, bootstrap = ctx.services.registry, ctx.services.bootstrap
    ca_fingerprint = registry.pki.ca_fingerprint()
    exchange = tokens.ExchangeKey() if host.enroll_token else None
    introduction = EngineIntroduction(
        ca_pem=registry.pki.ca_pem(), gateway_url=registry.gateway_url, host_id=host.id,
        proof=tokens.engine_proof(host.enroll_token, ca_fingerprint, exchange.public)
        if host.enroll_token and exchange else None,
        exchange_key=exchange.public if exchange else None)
    async with ctx.step(f"Contacting host {host.name} at {host.address}:{host.port}"):
        try:
            request, key = await bootstrap.request_enrollment(host.address, host.port,
                                                              introduction)
        except TransportError as exc:
            raise _retry_or_fail(ctx, f"cannot reach the Overt agent at {host.address}:"
                                      f"{host.port} ({exc}); is `overt node` running there?"
                                 ) from exc
    if not _vouched_for(host, request, key, ca_fingerprint, exchange):
        raise JobFailed(f"the node at {host.address}:{host.port} shows key {key}, which the "
                        "administrator did not confirm, and it did not prove it holds this "
                        "host's enrollment token: start it with `overt node --enroll-token "
                        "TOKEN` (the token `overt host add` printed), or add the host again "
                        "with the fingerprint the node logs")
    async with ctx.step(f"Issuing a certificate to host {host.name}"):
        # Signed and the broker account made before the row is locked; removed again
        # if the host is not granted after all.
        granted = False
        try:
            issued = await registry.issue(request)
            try:
                async with ctx.transaction() as session:
                    locked = await lookup.get(session, Host, host.id, for_update=True)
                    if locked.status != HostStatus.INSTALLING:
                        return {"status": locked.status}  # the node announced, was enrolled
                    grant = await registry.grant(session, locked, request, issued,
                                                 connect=False)
                granted = grant.status is EnrollmentStatus.APPROVED
            finally:
                if not granted:
                    await registry.discard(request.host_uuid, issued)
        except Unavailable as exc:
            raise _retry_or_fail(ctx, exc.detail) from exc
    if grant.status is not EnrollmentStatus.APPROVED:
        raise JobFailed(grant.message)
    # The host stays `installing` until the node took the certificate: a retry after a
    # failed or interrupted delivery reconnects (the node has it) or enrolls again.
    async with ctx.step(f"Sending host {host.name} its certificate"):
        try:
            await bootstrap.deliver_grant(host.address, host.port, grant)
        except TransportError as exc:
            raise _retry_or_fail(ctx, f"host {host.name} did not take its certificate "
                                      f"({exc})") from exc
        async with ctx.transaction() as session:
            locked = await lookup.get(session, Host, host.id, for_update=True)
            if locked.status == HostStatus.INSTALLING:
                registry.connected(session, locked)
    return {"host_uuid": str(request.host_uuid)}


def _vouched_for(host: Host, request: EnrollmentRequest, key: str, ca_fingerprint: str,
                 exchange: tokens.ExchangeKey | None) -> bool:
    """Whether the node's key is the one the administrator confirmed, or its holder proved
    it knows the one-time token issued with the host (sealed for this enrollment's
    exchange key and bound to the key the node showed in TLS; compared with the digest
    the engine keeps)."""
    if same_fingerprint(host.approved_key_fingerprint, key):
        return True
    if host.enroll_token is None or exchange is None:
        return False
    return tokens.matches(host.enroll_token,
                          exchange.unseal(request.proof, key, ca_fingerprint))


async def install_failed(session: AsyncSession, ctx: JobContext, spec: InstallHost,
                         message: str) -> None:
    host = await session.get(Host, spec.host_id)
    if host is not None and host.status == HostStatus.INSTALLING:
        host.status, host.status_detail = HostStatus.INSTALL_FAILED, message
        audit.record(session, f"Installing host {host.name} failed: {message}",
                     code=audit.HOST_INSTALL_FAILED, severity=LogSeverity.ERROR,
                     host_id=host.id, job_id=ctx.job.id)


UNITS: dict[type[JobSpec], Unit[Any]] = {InstallHost: Unit(install_host,
                                                           compensate=install_failed)}
