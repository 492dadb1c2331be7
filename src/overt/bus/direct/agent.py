"""A node's end of the direct transport: its HTTPS RPC server and its event delivery.

Enrolled, the server takes `POST /v1/commands` from the engine only (a client
certificate of the engine CA with CN `engine`). Before enrollment it serves the
bootstrap endpoints only, with a self-signed certificate, and announces the node
to the engine when it knows where the engine is. In fully managed mode
(`commands_and_events=False`) it is only that: the node's enrollment, while
commands and events go through the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ValidationError

from overt.bus.base import CommandHandler
from overt.bus.direct.delivery import EventDelivery
from overt.bus.direct.http import (
    COMMANDS_PATH,
    ENROLLMENT_CERTIFICATE_PATH,
    ENROLLMENT_REQUEST_PATH,
    HOST_UUID_HEADER,
)
from overt.bus.direct.tls import ENGINE_COMMON_NAME, common_name, node_names, peer_certificate
from overt.node.enrollment import EnrollmentClient
from overt.node.identity import IdentityError, NodeIdentity
from overt.pki.certs import load_cert
from overt.pki.expiry import Expiry, expired, expiry_of
from overt.protocol import (
    CommandEnvelope,
    ErrorCode,
    EventEnvelope,
    NodeError,
    ProtocolViolation,
    Reply,
    decode_command,
)
from overt.protocol.commands import HostCapabilitiesCommand
from overt.protocol.enrollment import (
    EngineIntroduction,
    EnrollmentGrant,
    EnrollmentRequest,
    EnrollmentStatus,
)
from overt.protocol.host import HostCapabilities

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

NO_REQUEST = uuid.UUID(int=0)
MAX_BODY_BYTES = 4 << 20


@dataclass(frozen=True)
class AgentServerSettings:
    listen_address: str = "0.0.0.0"  # noqa: S104 - the engine reaches nodes over management
    port: int = 54321
    engine_url: str | None = None  # announce the node there while it has no certificate
    advertise_address: str | None = None
    announce_interval_s: float = 5.0
    commands_and_events: bool = True  # False: enrollment only (fully managed mode)
    cert_check_interval_s: float = 3600.0  # how often the certificate's expiry is checked


# Told of every grant the node accepted (and stored), once it is enrolled with it.
GrantHook = Callable[[EnrollmentGrant], None]


class DirectAgentTransport:
    """`AgentTransport` over HTTPS + mutual TLS."""

    def __init__(self, identity: NodeIdentity, settings: AgentServerSettings,
                 on_enrolled: GrantHook | None = None) -> None:
        self.identity = identity
        self.settings = settings
        self.on_enrolled = on_enrolled
        self.delivery = EventDelivery()
        self._handler: CommandHandler | None = None
        self._capabilities: HostCapabilities | None = None
        self._tls: ssl.SSLContext | None = None
        self._runner: web.AppRunner | None = None
        self._announcing: asyncio.Task[None] | None = None
        self._renewing: asyncio.Task[None] | None = None
        self._introduced_gateway: str | None = None
        self._enrolled = False
        self.port: int | None = None  # the bound port, once started

    @property
    def host_uuid(self) -> uuid.UUID:
        if self._capabilities is None:
            raise RuntimeError("the transport has not started")
        return self._capabilities.host_uuid

    @property
    def enrolled(self) -> bool:
        return self._enrolled

    # -- AgentTransport -----------------------------------------------------------------

    async def start(self, handler: CommandHandler) -> None:
        self._handler = handler
        self._capabilities = await self._read_capabilities(handler)
        self.delivery.start()
        if self.identity.enrolled(self.host_uuid):
            files = self.identity.files()
            self._tls = files.server_context(client_certs=ssl.CERT_REQUIRED)
            self._start_delivery()
            self._enrolled = True
            self._start_renewal()
        else:
            self._tls = self._bootstrap_context()
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post(COMMANDS_PATH, self._commands)
        app.router.add_post(ENROLLMENT_REQUEST_PATH, self._enrollment_request)
        app.router.add_post(ENROLLMENT_CERTIFICATE_PATH, self._enrollment_certificate)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.listen_address, self.settings.port,
                           ssl_context=self._tls)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        if not self._enrolled and self.settings.engine_url and self._can_announce():
            # Announced once the port is bound: the request tells the engine where it is.
            self._announcing = asyncio.create_task(self._announce(), name="enrollment")
        what = "commands" if self._enrolled else "enrollment only (not enrolled yet)"
        if not self.settings.commands_and_events:
            what = "enrollment only (commands come through the broker)"
        log.info("serving %s on https://%s:%d", what, self.settings.listen_address, self.port)

    async def publish(self, event: EventEnvelope) -> None:
        self.delivery.publish(event)

    async def publish_lossy(self, event: EventEnvelope) -> None:
        self.delivery.publish_lossy(event)

    async def close(self) -> None:
        for task in (self._announcing, self._renewing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._runner is not None:
            await self._runner.cleanup()
        await self.delivery.close()

    # -- TLS and enrollment ---------------------------------------------------------------

    async def _read_capabilities(self, handler: CommandHandler) -> HostCapabilities:
        reply = await handler(CommandEnvelope(command=HostCapabilitiesCommand()))
        if not reply.ok or reply.result is None:
            raise RuntimeError(f"cannot read the host's capabilities: {reply.error}")
        return HostCapabilities.model_validate(reply.result)

    def _names(self) -> list[str]:
        caps = self._capabilities
        assert caps is not None
        return node_names(caps.host_uuid, caps.hostname, self._address())

    def _address(self) -> str:
        """The address the engine should use for this node."""
        if self.settings.advertise_address:
            return self.settings.advertise_address
        if self.settings.listen_address not in ("0.0.0.0", "::", ""):  # noqa: S104
            return self.settings.listen_address
        engine_host = urlsplit(self.settings.engine_url or "").hostname
        if engine_host:
            with contextlib.suppress(OSError), \
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((engine_host, 9))  # picks the route; sends nothing
                return str(probe.getsockname()[0])
        return socket.gethostname()

    def _bootstrap_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.identity.bootstrap_cert(self.host_uuid, self._names()),
                            self.identity.key_file)
        configured = self.identity.engine_ca_file
        if configured is not None:  # only the engine of this CA may introduce itself
            ctx.load_verify_locations(cafile=configured)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def _become_enrolled(self, grant: EnrollmentGrant) -> None:
        """Switch the running server to the CA-issued certificate and mutual TLS."""
        files = self.identity.files()
        assert self._tls is not None
        self._tls.load_cert_chain(files.cert_file, files.key_file)
        self._tls.load_verify_locations(cafile=files.ca_file)
        self._tls.verify_mode = ssl.CERT_REQUIRED
        self._enrolled = True
        self._start_delivery()
        self._start_renewal()
        if self.settings.commands_and_events:
            log.info("enrolled; serving commands with mutual TLS (gateway %s)",
                     self.identity.gateway_url())
        if self.on_enrolled is not None:
            self.on_enrolled(grant)

    def _can_announce(self) -> bool:
        """A node given only an enrollment token waits for the engine that issued it to add
        it by address (the token proves that engine's CA); it cannot check a CA it fetched."""
        identity = self.identity
        if identity.trusted_ca_file() is None and identity.ca_fingerprint is None \
                and identity.enroll_token is not None:
            log.info("waiting for the engine to add this node by address (enrollment token); "
                     "not announcing to %s", self.settings.engine_url)
            return False
        return True

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
            await asyncio.sleep(self.settings.cert_check_interval_s)

    async def renew_if_due(self) -> bool:
        """Ask the engine for a renewed certificate if ours is due; True if renewed."""
        current = self.identity.certificate()
        if expiry_of(current, self.identity.clock.now()) is Expiry.OK:
            return False
        gateway = self.identity.gateway_url() or self.settings.engine_url
        if gateway is None:
            raise IdentityError("no engine gateway known to renew the certificate with")
        grant = await EnrollmentClient(gateway, self.identity).ask_once(
            self.enrollment_request())
        if grant.status is not EnrollmentStatus.APPROVED or grant.certificate_pem is None:
            raise IdentityError(f"the engine did not renew the certificate: {grant.message}")
        if load_cert(grant.certificate_pem.encode()) == current:
            return False
        self.identity.accept_grant(grant, self.host_uuid, gateway)
        self._reload_identity()
        log.info("renewed this node's certificate: valid until %s",
                 self.identity.certificate().not_valid_after_utc)
        if self.on_enrolled is not None:
            self.on_enrolled(grant)
        return True

    def _reload_identity(self) -> None:
        files = self.identity.files()
        assert self._tls is not None
        self._tls.load_cert_chain(files.cert_file, files.key_file)
        self._tls.load_verify_locations(cafile=files.ca_file)
        self._start_delivery()

    def _start_delivery(self) -> None:
        if not self.settings.commands_and_events:
            return
        url = self.identity.gateway_url()
        if url is None:
            log.warning("no engine gateway known: events wait until one is configured")
            return
        self.delivery.target(url, self.identity.files().engine_client_context())

    def enrollment_request(self) -> EnrollmentRequest:
        """What this node says of itself when it asks the engine for a certificate."""
        caps = self._capabilities
        assert caps is not None
        return EnrollmentRequest(host_uuid=caps.host_uuid, hostname=caps.hostname,
                                 address=self._address(), rpc_port=self.port or 0,
                                 csr_pem=self.identity.csr_pem(caps.host_uuid, self._names()),
                                 capabilities=caps)

    async def _announce(self) -> None:
        engine_url = self.settings.engine_url
        assert engine_url is not None
        client = EnrollmentClient(engine_url, self.identity, self.settings.announce_interval_s)
        grant = await client.enroll(self.enrollment_request)
        try:
            self.identity.accept_grant(grant, self.host_uuid, engine_url)
        except IdentityError as exc:
            log.error("the engine's certificate for this node is not acceptable: %s", exc)
            return
        self._become_enrolled(grant)

    # -- HTTP handlers --------------------------------------------------------------------

    async def _commands(self, request: web.Request) -> web.Response:
        if not self.settings.commands_and_events:
            return _reply(409, NO_REQUEST, ErrorCode.BAD_REQUEST,
                          "this node runs in fully managed mode: it takes commands through "
                          "the broker only")
        if not self._enrolled:
            return _reply(403, NO_REQUEST, ErrorCode.UNAUTHORIZED,
                          "this node is not enrolled yet; enroll it with the engine first")
        refusal = self._refuse_unless_engine(request)
        if refusal is not None:
            return refusal
        asked = request.headers.get(HOST_UUID_HEADER)
        if asked is not None and asked != str(self.host_uuid):
            return _reply(421, NO_REQUEST, ErrorCode.BAD_REQUEST,
                          f"this is node {self.host_uuid}, not {asked}")
        body = await request.read()
        try:
            envelope = decode_command(body)
        except ProtocolViolation as violation:
            log.warning("refused a malformed command: %s", violation)
            return _json(400, Reply.failure(_request_id_of(body), violation.error))
        assert self._handler is not None
        return _json(200, await self._handler(envelope))

    def _refuse_unless_engine(self, request: web.Request) -> web.Response | None:
        cert = peer_certificate(request)
        if cert is not None and expired(cert, self.identity.clock.now()):
            log.warning("refused the engine: its certificate expired on %s",
                        cert.not_valid_after_utc, extra={"peer": request.remote})
            return _reply(403, NO_REQUEST, ErrorCode.UNAUTHORIZED,
                          "the engine's certificate has expired; run `overt pki recover` on "
                          "the engine")
        if cert is None or common_name(cert) != ENGINE_COMMON_NAME:
            who = common_name(cert) if cert is not None else "no certificate"
            log.warning("refused a request from %s", who, extra={"peer": request.remote})
            return _reply(403, NO_REQUEST, ErrorCode.UNAUTHORIZED,
                          f"only the engine may call this node (client certificate CN "
                          f"{ENGINE_COMMON_NAME!r} from the engine CA); got {who}")
        return None

    async def _enrollment_request(self, request: web.Request) -> web.Response:
        if self._enrolled:
            return _error(409, "this node is enrolled already")
        if self.identity.engine_ca_file is not None:  # else: checked by fingerprint or token
            refusal = self._refuse_unless_engine(request)
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
        answer = self.enrollment_request().model_copy(
            update={"proof": proof})
        return _json(200, answer)

    async def _enrollment_certificate(self, request: web.Request) -> web.Response:
        if self._enrolled:
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
        self._become_enrolled(grant)
        response = web.json_response({"enrolled": True, "host_uuid": str(self.host_uuid)})
        response.force_close()  # the next connection must show the engine's certificate
        return response


async def _parse(request: web.Request, model: type[M]) -> M | web.Response:
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as exc:
        return _error(400, f"malformed {model.__name__}: {exc.errors()[0]['msg']}")


def _request_id_of(body: bytes) -> uuid.UUID:
    """The request id of a refused command, when it can be read; else the nil UUID."""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        return uuid.UUID(str(json.loads(body).get("request_id")))
    return NO_REQUEST


def _json(status: int, model: BaseModel) -> web.Response:
    return web.Response(status=status, text=model.model_dump_json(),
                        content_type="application/json")


def _reply(status: int, request_id: uuid.UUID, code: ErrorCode, message: str) -> web.Response:
    return _json(status, Reply.failure(request_id, NodeError(code=code, message=message)))


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
