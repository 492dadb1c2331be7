"""Host jobs: enrolling a host added by address."""

from __future__ import annotations

from typing import Any

from overt.bus.base import TransportError
from overt.engine.db.tables import Host
from overt.engine.jobs.context import FailureHook, Handler, JobContext
from overt.engine.jobs.errors import JobFailed, RetryLater
from overt.engine.model.errors import Unavailable
from overt.engine.model.status import HostStatus, LogSeverity
from overt.engine.services import audit, lookup
from overt.pki import tokens
from overt.pki.certs import same_fingerprint
from overt.protocol.enrollment import EngineIntroduction, EnrollmentRequest, EnrollmentStatus


async def install_host(ctx: JobContext) -> dict[str, Any]:
    host_id = ctx.uuid_param("host_id")
    registry, bootstrap = ctx.services.registry, ctx.services.bootstrap
    async with ctx.transaction() as session:
        host = await lookup.get(session, Host, host_id)
    if host.status != HostStatus.INSTALLING.value:
        return {"status": host.status}  # enrolled already (a retried job, or the node announced)
    ca_fingerprint = registry.pki.ca_fingerprint()
    introduction = EngineIntroduction(
        ca_pem=registry.pki.ca_pem(), gateway_url=registry.gateway_url, host_id=host.id,
        proof=tokens.engine_proof(host.enroll_token, ca_fingerprint)
        if host.enroll_token else None)
    async with ctx.step(f"Contacting host {host.name} at {host.address}:{host.port}"):
        try:
            request, key = await bootstrap.request_enrollment(host.address, host.port,
                                                              introduction)
        except TransportError as exc:
            raise RetryLater(f"cannot reach the Overt agent at {host.address}:{host.port} "
                             f"({exc}); is `overt node` running there?") from exc
    if not _vouched_for(host, request, key, ca_fingerprint):
        raise JobFailed(f"the node at {host.address}:{host.port} shows key {key}, which the "
                        "administrator did not confirm, and it did not prove it holds this "
                        "host's enrollment token: start it with `overt node --enroll-token "
                        "TOKEN` (the token `overt host add` printed), or add the host again "
                        "with the fingerprint the node logs")
    async with ctx.step(f"Issuing a certificate to host {host.name}"):
        try:
            account = await registry.broker_account(request.host_uuid)
            async with ctx.transaction() as session:
                host = await lookup.get(session, Host, host_id, for_update=True)
                grant = await registry.grant(session, host, request, broker=account)
        except Unavailable as exc:
            raise RetryLater(exc.detail) from exc
    if grant.status is not EnrollmentStatus.APPROVED:
        raise JobFailed(grant.message)
    async with ctx.step(f"Sending host {host.name} its certificate"):
        try:
            await bootstrap.deliver_grant(host.address, host.port, grant)
        except TransportError as exc:
            raise RetryLater(f"host {host.name} did not take its certificate ({exc})") from exc
    return {"host_uuid": str(request.host_uuid)}


def _vouched_for(host: Host, request: EnrollmentRequest, key: str, ca_fingerprint: str) -> bool:
    """Whether the node's key is the one the administrator confirmed, or its holder proved
    it knows the one-time token issued with the host."""
    if same_fingerprint(host.approved_key_fingerprint, key):
        return True
    if host.enroll_token is None:
        return False
    return tokens.check(tokens.node_proof(host.enroll_token, key, ca_fingerprint),
                        request.proof)


async def _install_failed(ctx: JobContext, message: str) -> None:
    async with ctx.transaction() as session:
        host = await session.get(Host, ctx.uuid_param("host_id"))
        if host is not None and host.status == HostStatus.INSTALLING.value:
            host.status, host.status_detail = HostStatus.INSTALL_FAILED.value, message
            audit.record(session, f"Adding host {host.name} failed: {message}",
                         code=audit.HOST_INSTALL_FAILED, severity=LogSeverity.ERROR,
                         host_id=host.id, job_id=ctx.job.id)


FAILURE_HOOKS: dict[str, FailureHook] = {"host.install": _install_failed}
HANDLERS: dict[str, Handler] = {"host.install": install_host}

