"""A node's enrollment, from its first contact with an engine to each renewal after.

Two ways in (see `overt.protocol.enrollment`): the node announces itself to the engine
it is configured with (`announce.EnrollmentClient`), or an administrator adds it by
address and the engine calls its enrollment endpoints (`introduction`, then
`certificate`). Once enrolled, the node renews its certificate through the engine's
gateway well before it expires. The transport serves the endpoints on its own port and
is told of every grant (`on_grant`), to switch its TLS to the CA-issued certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import TypeVar

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ValidationError

from overt.node.enrollment.announce import EnrollmentClient
from overt.node.identity import IdentityError, NodeIdentity
from overt.pki.certs import load_cert
from overt.pki.expiry import Expiry, expiry_of
from overt.protocol.enrollment import (
    EngineIntroduction,
    EnrollmentGrant,
    EnrollmentRequest,
    EnrollmentStatus,
)

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

# What the node says of itself when it asks for a certificate (the transport knows its
# address and port).
Describe = Callable[[], EnrollmentRequest]
# Told of every grant the node accepted and stored (first enrollment and renewals).
GrantHook = Callable[[EnrollmentGrant], None]
# The transport's check that a request comes from the engine (a response refuses it).
EngineCheck = Callable[[web.Request], web.Response | None]


class NodeEnrollment:
    def __init__(self, identity: NodeIdentity, *, describe: Describe, on_grant: GrantHook,
                 engine_check: EngineCheck, engine_url: str | None,
                 announce_interval_s: float, cert_check_interval_s: float) -> None:
        self.identity = identity
        self.describe = describe
        self.on_grant = on_grant
        self.engine_check = engine_check
        self.engine_url = engine_url
        self.announce_interval_s = announce_interval_s
        self.cert_check_interval_s = cert_check_interval_s
        self.enrolled = False
        self._host_uuid: uuid.UUID | None = None
        self._introduced_gateway: str | None = None
        self._announcing: asyncio.Task[None] | None = None
        self._renewing: asyncio.Task[None] | None = None
        # Whether the engine certifies nodes with a node CA, as its last grant said (None:
        # no grant this run). An engine of one CA would renew a certificate of its own CA
        # with another: the node then stops renewing early to move to a node CA.
        self._engine_has_node_ca: bool | None = None

    def begin(self, host_uuid: uuid.UUID, *, enrolled: bool) -> None:
        """Renew when enrolled, else announce (if the engine is known and may be trusted);
        the enrollment endpoints answer from now on."""
        self._host_uuid = host_uuid
        self.enrolled = enrolled
        if enrolled:
            self._start_renewal()
        elif self.engine_url and self._can_announce():
            self._announcing = asyncio.create_task(self._announce(), name="enrollment")

    async def close(self) -> None:
        for task in (self._announcing, self._renewing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    @property
    def host_uuid(self) -> uuid.UUID:
        if self._host_uuid is None:
            raise RuntimeError("enrollment has not begun")
        return self._host_uuid

    # -- announcing ------------------------------------------------------------------

    def _can_announce(self) -> bool:
        """A node given only an enrollment token waits for the engine that issued it to add
        it by address (the token proves that engine's CA); it cannot check a CA it fetched."""
        identity = self.identity
        if identity.trusted_ca_file() is None and identity.ca_fingerprint is None \
                and identity.enroll_token is not None:
            log.info("waiting for the engine to add this node by address (enrollment token); "
                     "not announcing to %s", self.engine_url)
            return False
        return True

    async def _announce(self) -> None:
        engine_url = self.engine_url
        assert engine_url is not None
        client = EnrollmentClient(engine_url, self.identity, self.announce_interval_s)
        grant = await client.enroll(self.describe)
        try:
            self.identity.accept_grant(grant, self.host_uuid, engine_url)
        except IdentityError as exc:
            log.error("the engine's certificate for this node is not acceptable: %s", exc)
            return
        self._enrolled_with(grant)

    def _enrolled_with(self, grant: EnrollmentGrant) -> None:
        self.enrolled = True
        self._engine_has_node_ca = grant.node_ca_pem is not None
        self._start_renewal()
        self.on_grant(grant)

    # -- renewal ---------------------------------------------------------------------

    def _start_renewal(self) -> None:
        if self._renewing is None:
            self._renewing = asyncio.create_task(self._renew_forever(), name="renewal")

    async def _renew_forever(self) -> None:
        """Renew the node's certificate well before it expires, over the trusted channel
        (the engine CA checked, the engine's name checked, the node's own key)."""
        while True:
            try:
                await self.renew_if_due()
            except (IdentityError, OSError, ValueError, aiohttp.ClientError,
                    TimeoutError) as exc:
                log.warning("cannot renew this node's certificate now: %s", exc)
            await asyncio.sleep(self.cert_check_interval_s)

    async def renew_if_due(self) -> bool:
        """Ask the engine for a renewed certificate if ours is due, or comes from the engine
        CA of before the node CA (an upgraded engine); True if renewed."""
        current = self.identity.certificate()
        if expiry_of(current, self.identity.clock.now()) is Expiry.OK and not (
                self._engine_has_node_ca is not False and self.identity.on_pre_split_ca()):
            return False
        gateway = self.identity.gateway_url() or self.engine_url
        if gateway is None:
            raise IdentityError("no engine gateway known to renew the certificate with")
        grant = await EnrollmentClient(gateway, self.identity).ask_once(self.describe())
        if grant.status is not EnrollmentStatus.APPROVED or grant.certificate_pem is None:
            raise IdentityError(f"the engine did not renew the certificate: {grant.message}")
        self._engine_has_node_ca = grant.node_ca_pem is not None
        if load_cert(grant.certificate_pem.encode()) == current:
            return False
        self.identity.accept_grant(grant, self.host_uuid, gateway)
        log.info("renewed this node's certificate: valid until %s",
                 self.identity.certificate().not_valid_after_utc)
        self.on_grant(grant)
        return True

    # -- the enrollment endpoints (an engine adding this node by address) ---------------

    async def introduction(self, request: web.Request) -> web.Response:
        """`POST /v1/enrollment/request`: the engine introduces itself; the node answers
        with its certificate request and facts."""
        if self.enrolled:
            return _error(409, "this node is enrolled already")
        if self.identity.engine_ca_file is not None:  # else: checked by fingerprint or token
            refusal = self.engine_check(request)
            if refusal is not None:
                return refusal
        intro = await _parse(request, EngineIntroduction)
        if isinstance(intro, web.Response):
            return intro
        try:
            self.identity.trust_ca(intro.ca_pem, intro.proof, intro.exchange_key)
            proof = self.identity.token_proof(intro.ca_pem, intro.exchange_key)
        except IdentityError as exc:
            log.warning("refused an engine's introduction: %s", exc,
                        extra={"peer": request.remote})
            return _error(403, str(exc))
        self._introduced_gateway = intro.gateway_url
        log.info("engine introduced itself (gateway %s, host id %s)", intro.gateway_url,
                 intro.host_id, extra={"peer": request.remote})
        answer = self.describe().model_copy(
            update={"proof": proof})
        return web.Response(text=answer.model_dump_json(), content_type="application/json")

    async def certificate(self, request: web.Request) -> web.Response:
        """`POST /v1/enrollment/certificate`: the engine gives the node its certificate."""
        if self.enrolled:
            return _error(409, "this node is enrolled already")
        grant = await _parse(request, EnrollmentGrant)
        if isinstance(grant, web.Response):
            return grant
        try:
            self.identity.accept_grant(grant, self.host_uuid, self._introduced_gateway)
        except IdentityError as exc:
            return _error(403, str(exc))
        if self._announcing is not None:
            self._announcing.cancel()
        self._enrolled_with(grant)
        response = web.json_response({"enrolled": True, "host_uuid": str(self.host_uuid)})
        response.force_close()  # the next connection must show the engine's certificate
        return response


async def _parse(request: web.Request, model: type[M]) -> M | web.Response:
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as exc:
        return _error(400, f"malformed {model.__name__}: {exc.errors()[0]['msg']}")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
