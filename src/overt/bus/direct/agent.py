"""A node's end of the direct transport: its HTTPS RPC server and its event delivery.

Enrolled, the server takes `POST /v1/commands` from the engine only (a client
certificate of the engine CA with CN `engine`). Before enrollment it shows a
self-signed certificate and serves the node's enrollment endpoints, whose logic
(announcing, being added by address, renewal) is `overt.node.enrollment`. In fully
managed mode (`commands_and_events=False`) it serves only those, while commands and
events go through the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel

from overt.bus.base import CommandHandler
from overt.bus.direct.delivery import EventDelivery
from overt.bus.direct.http import (
    COMMANDS_PATH,
    ENROLLMENT_CERTIFICATE_PATH,
    ENROLLMENT_REQUEST_PATH,
    HOST_UUID_HEADER,
)
from overt.bus.direct.tls import ENGINE_COMMON_NAME, common_name, node_names, peer_certificate
from overt.node.enrollment.lifecycle import GrantHook, NodeEnrollment
from overt.node.hardware import read_facts
from overt.node.identity import NodeIdentity
from overt.pki.expiry import expired
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
    EnrollmentGrant,
    EnrollmentRequest,
)
from overt.protocol.hardware import HardwareFacts
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
    # Where the hardware facts are read (/proc, /sys under it) for the announcement; None
    # for a node with no machine of its own to describe (a simulated one).
    hardware_root: Path | None = None


class DirectAgentTransport:
    """`AgentTransport` over HTTPS + mutual TLS; serves the node's enrollment endpoints too."""

    def __init__(self, identity: NodeIdentity, settings: AgentServerSettings,
                 on_enrolled: GrantHook | None = None) -> None:
        self.identity = identity
        self.settings = settings
        self.on_enrolled = on_enrolled
        self.delivery = EventDelivery()
        self.enrollment = NodeEnrollment(
            identity, describe=self.enrollment_request, on_grant=self._use_grant,
            engine_check=self._refuse_unless_engine, engine_url=settings.engine_url,
            announce_interval_s=settings.announce_interval_s,
            cert_check_interval_s=settings.cert_check_interval_s)
        self._handler: CommandHandler | None = None
        self._capabilities: HostCapabilities | None = None
        self._hardware: HardwareFacts | None = None
        self._tls: ssl.SSLContext | None = None
        self._runner: web.AppRunner | None = None
        self._issued_certificate = False  # serving the CA-issued one (else the self-signed)
        self.port: int | None = None  # the bound port, once started

    @property
    def host_uuid(self) -> uuid.UUID:
        if self._capabilities is None:
            raise RuntimeError("the transport has not started")
        return self._capabilities.host_uuid

    @property
    def enrolled(self) -> bool:
        return self.enrollment.enrolled

    # -- AgentTransport -----------------------------------------------------------------

    async def start(self, handler: CommandHandler) -> None:
        self._handler = handler
        self._capabilities = await self._read_capabilities(handler)
        if self.settings.hardware_root is not None:
            self._hardware = await asyncio.to_thread(read_facts, self.settings.hardware_root)
        self.delivery.start()
        enrolled = self.identity.enrolled(self.host_uuid)
        if enrolled:
            files = self.identity.files()
            self._tls = files.server_context(client_certs=ssl.CERT_REQUIRED)
            self._issued_certificate = True
            self._start_delivery()
        else:
            self._tls = self._self_signed_context()
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post(COMMANDS_PATH, self._commands)
        app.router.add_post(ENROLLMENT_REQUEST_PATH, self.enrollment.introduction)
        app.router.add_post(ENROLLMENT_CERTIFICATE_PATH, self.enrollment.certificate)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.listen_address, self.settings.port,
                           ssl_context=self._tls)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        # Begun once the port is bound: an announcement tells the engine where it is.
        self.enrollment.begin(self.host_uuid, enrolled=enrolled)
        what = "commands" if enrolled else "enrollment only (not enrolled yet)"
        if not self.settings.commands_and_events:
            what = "enrollment only (commands come through the broker)"
        log.info("serving %s on https://%s:%d", what, self.settings.listen_address, self.port)

    async def publish(self, event: EventEnvelope) -> None:
        self.delivery.publish(event)

    async def publish_lossy(self, event: EventEnvelope) -> None:
        self.delivery.publish_lossy(event)

    async def close(self) -> None:
        await self.enrollment.close()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.delivery.close()

    # -- TLS and what the node says of itself ----------------------------------------------

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

    def _self_signed_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.identity.self_signed_cert(self.host_uuid, self._names()),
                            self.identity.key_file)
        configured = self.identity.engine_ca_file
        if configured is not None:  # only the engine of this CA may introduce itself
            ctx.load_verify_locations(cafile=configured)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def _use_grant(self, grant: EnrollmentGrant) -> None:
        """Serve the certificate just granted (first or renewed), with mutual TLS."""
        files = self.identity.files()
        assert self._tls is not None
        self._tls.load_cert_chain(files.cert_file, files.key_file)
        self._tls.load_verify_locations(cafile=files.ca_file)
        self._tls.verify_mode = ssl.CERT_REQUIRED
        self._start_delivery()
        if not self._issued_certificate and self.settings.commands_and_events:
            log.info("enrolled; serving commands with mutual TLS (gateway %s)",
                     self.identity.gateway_url())
        self._issued_certificate = True
        if self.on_enrolled is not None:
            self.on_enrolled(grant)

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
                                 capabilities=caps, hardware=self._hardware)

    # -- HTTP handlers --------------------------------------------------------------------

    async def _commands(self, request: web.Request) -> web.Response:
        if not self.settings.commands_and_events:
            return _reply(409, NO_REQUEST, ErrorCode.BAD_REQUEST,
                          "this node runs in fully managed mode: it takes commands through "
                          "the broker only")
        if not self.enrollment.enrolled:
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
