"""The engine's end of the direct transport: calling nodes' RPC servers over mutual TLS.

A node is trusted when its server certificate chains to the engine CA and names
the host UUID the engine expects (checked on every reply; the node itself also
refuses a command addressed to another host UUID before acting).
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import uuid
from typing import Any

import aiohttp
from cryptography import x509

from overt.bus.base import (
    CommandTimedOut,
    EventSink,
    NodeAddress,
    NodeUnreachable,
    TransportError,
)
from overt.bus.direct.gateway import NodeGateway
from overt.bus.direct.http import (
    COMMANDS_PATH,
    ENROLLMENT_CERTIFICATE_PATH,
    ENROLLMENT_REQUEST_PATH,
    HOST_UUID_HEADER,
)
from overt.bus.direct.tls import TlsFiles
from overt.clock import Clock
from overt.pki.certs import csr_key_fingerprint, fingerprint, host_uuid_of, key_fingerprint
from overt.pki.expiry import expired
from overt.protocol import CommandEnvelope, ProtocolViolation, Reply, decode_reply
from overt.protocol.enrollment import EngineIntroduction, EnrollmentGrant, EnrollmentRequest

log = logging.getLogger(__name__)

# The node answers within the command's timeout; allow for the network on top.
TIMEOUT_MARGIN_S = 5.0
BOOTSTRAP_TIMEOUT_S = 30.0


class IdentityCheckingConnector(aiohttp.TCPConnector):
    """Checks, right after the TLS handshake and before anything is sent, that the node's
    certificate names the host UUID the request is meant for (`HOST_UUID_HEADER`) and,
    when the engine pinned one for that host (`pins`), is that very certificate."""

    last_peer_cert: x509.Certificate | None = None

    def __init__(self, *args: Any, clock: Clock | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pins: dict[str, str] = {}
        self.clock = clock or Clock()

    async def _wrap_create_connection(self, *args: Any, **kwargs: Any) -> Any:
        transport, protocol = await super()._wrap_create_connection(*args, **kwargs)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self.last_peer_cert = x509.load_der_x509_certificate(der) if der else None
        request = kwargs.get("req")
        expected = request.headers.get(HOST_UUID_HEADER) if request is not None else None
        if request is not None and expected is not None:
            cert = self.last_peer_cert
            found = host_uuid_of(cert) if cert is not None else None
            if str(found) != expected:
                transport.close()
                raise NodeIdentityMismatch(
                    f"the server at {request.url.origin()} is host {found}, not {expected}; "
                    "the engine's record of this node's address is wrong")
            if cert is not None and expired(cert, self.clock.now()):
                transport.close()
                raise NodeIdentityMismatch(
                    f"host {expected} at {request.url.origin()} shows a certificate that "
                    f"expired on {cert.not_valid_after_utc:%Y-%m-%d}; the node renews it "
                    "itself, or run `overt pki recover` on the engine")
            pinned = self.pins.get(expected)
            if pinned is not None and cert is not None and fingerprint(cert) != pinned:
                transport.close()
                raise NodeIdentityMismatch(
                    f"host {expected} at {request.url.origin()} shows certificate "
                    f"{fingerprint(cert)[:23]}..., not the one the engine issued it last "
                    "(an old key?); enroll the node again")
        return transport, protocol


class NodeIdentityMismatch(TransportError):
    """The node's certificate names another host than the engine meant to reach."""


class DirectEngineTransport:
    """`EngineTransport` over HTTPS + mutual TLS; events arrive through a `NodeGateway`."""

    def __init__(self, tls: TlsFiles, *, gateway: NodeGateway | None = None,
                 timeout_margin_s: float = TIMEOUT_MARGIN_S, clock: Clock | None = None) -> None:
        self.tls = tls
        self.clock = clock or Clock()
        self.gateway = gateway
        self.timeout_margin_s = timeout_margin_s
        self._contexts: dict[uuid.UUID, ssl.SSLContext] = {}
        self._connector: IdentityCheckingConnector | None = None
        self._session: aiohttp.ClientSession | None = None
        self._started_gateway = False

    async def start(self, sink: EventSink | None) -> None:
        self._connector = IdentityCheckingConnector(clock=self.clock)
        self._session = aiohttp.ClientSession(connector=self._connector)
        if sink is not None:
            if self.gateway is None:
                raise ValueError("the direct transport receives node events through its "
                                 "NodeGateway: pass gateway= to receive them")
            self.gateway.set_sink(sink)
            if not self.gateway.running:
                await self.gateway.start()
                self._started_gateway = True

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._started_gateway and self.gateway is not None:
            await self.gateway.stop()
            self._started_gateway = False

    async def call(self, node: NodeAddress, envelope: CommandEnvelope) -> Reply:
        if node.url is None:
            raise TransportError(f"node {node.host_uuid} has no RPC URL for the direct transport")
        session = self._require_session()
        self._pin(node)
        url = node.url.rstrip("/") + COMMANDS_PATH
        timeout = aiohttp.ClientTimeout(total=envelope.timeout_s + self.timeout_margin_s)
        try:
            async with session.post(url, data=envelope.model_dump_json(),
                                    ssl=self._context_for(node.host_uuid),
                                    timeout=timeout, headers={
                                        "Content-Type": "application/json",
                                        HOST_UUID_HEADER: str(node.host_uuid)}) as response:
                body = await response.read()
                status = response.status
        except TimeoutError:
            raise CommandTimedOut(
                f"node {node.host_uuid} did not answer {envelope.command.name} within "
                f"{envelope.timeout_s:g} s; it may still act on it") from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise TransportError(f"node {node.host_uuid} at {node.url} showed a certificate "
                                 f"the engine CA did not issue: {exc.certificate_error}") from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise NodeUnreachable(f"cannot reach node {node.host_uuid} at {node.url}: "
                                  f"{_reason(exc)}") from None
        return _reply_from(status, body, node)

    def reload_certificate(self) -> None:
        """Show the renewed engine certificate on new connections to nodes."""
        self._contexts.clear()

    def _pin(self, node: NodeAddress) -> None:
        """Expect the node's pinned certificate; a changed pin drops its pooled connections."""
        assert self._connector is not None
        key = str(node.host_uuid)
        if node.certificate_fingerprint is None:
            self._connector.pins.pop(key, None)
            return
        if self._connector.pins.get(key) != node.certificate_fingerprint:
            self._connector.pins[key] = node.certificate_fingerprint
            self._contexts.pop(node.host_uuid, None)  # a new context: a new connection pool

    def _context_for(self, host_uuid: uuid.UUID) -> ssl.SSLContext:
        """One TLS context per node: pooled connections are never shared between nodes."""
        context = self._contexts.get(host_uuid)
        if context is None:
            context = self._contexts[host_uuid] = self.tls.client_context()
        return context

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise TransportError("the direct transport is not started")
        return self._session

    # -- adding a node by address (its enrollment endpoints) -------------------------------

    async def request_enrollment(self, node_url: str,
                                 introduction: EngineIntroduction) -> tuple[EnrollmentRequest,
                                                                            str]:
        """Introduce the engine to a node that is not enrolled yet; get its CSR and facts.

        Returns the request and the key fingerprint of the node's self-signed certificate
        (the key the administrator compares with the one the node logs). The node's
        certificate is self-signed, so TLS does not vouch for it: the caller decides
        whether this key may be certified (confirmed fingerprint or token proof).
        """
        body, cert = await self._post_unenrolled(node_url, ENROLLMENT_REQUEST_PATH,
                                                introduction.model_dump_json())
        try:
            request = EnrollmentRequest.model_validate_json(body)
            csr_key = csr_key_fingerprint(request.csr_pem)
        except ValueError:
            raise TransportError(f"the node at {node_url} answered a malformed enrollment "
                                 "request") from None
        if cert is None or host_uuid_of(cert) != request.host_uuid:
            raise TransportError(f"the node at {node_url} showed a certificate that does not "
                                 f"name host {request.host_uuid}")
        shown = key_fingerprint(cert.public_key())
        if shown != csr_key:
            raise TransportError(f"the node at {node_url} asks a certificate for another key "
                                 "than the one it shows")
        return request, shown

    async def send_certificate(self, node_url: str, grant: EnrollmentGrant) -> None:
        """Hand an approved node its certificate; it then serves commands with mutual TLS."""
        await self._post_unenrolled(node_url, ENROLLMENT_CERTIFICATE_PATH,
                                   grant.model_dump_json())

    async def _post_unenrolled(self, node_url: str, path: str,
                              data: str) -> tuple[bytes, x509.Certificate | None]:
        # The node shows a self-signed certificate until enrolled: not verifiable by the
        # CA; the engine shows its own so that a node configured with the CA can check it.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        connector = IdentityCheckingConnector(force_close=True)
        try:
            async with aiohttp.ClientSession(connector=connector) as session, session.post(
                    node_url.rstrip("/") + path, data=data, ssl=context,
                    headers={"Content-Type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=BOOTSTRAP_TIMEOUT_S)) as response:
                cert = connector.last_peer_cert
                body = await response.read()
                if response.status != 200:
                    raise TransportError(f"the node at {node_url} refused {path} "
                                         f"({response.status}): {_error_text(body)}")
                return body, cert
        except TimeoutError:
            raise CommandTimedOut(f"the node at {node_url} did not answer {path}") from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise NodeUnreachable(f"cannot reach the node at {node_url}: "
                                  f"{exc or type(exc).__name__}") from None


def _reply_from(status: int, body: bytes, node: NodeAddress) -> Reply:
    try:
        return decode_reply(body)
    except ProtocolViolation as violation:
        if status == 200:
            raise TransportError(f"node {node.host_uuid} answered something that is not a "
                                 f"reply: {violation}") from None
    raise TransportError(f"node {node.host_uuid} refused the command ({status}): "
                         f"{_error_text(body)}")


def _error_text(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:300].decode(errors="replace")
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            return str(error.get("message", error))
        if error is not None:
            return str(error)
    return str(data)[:300]


def _reason(exc: BaseException) -> str:
    """The operating system's words for a failed connection (aiohttp's own text shows the
    TLS context's repr)."""
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.errno:
        return os.strerror(os_error.errno).lower()
    return str(exc) or type(exc).__name__
