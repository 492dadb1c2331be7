"""The engine's node gateway: where nodes deliver their events and ask to be enrolled.

- `POST /v1/events`: a JSON list of `EventEnvelope`s from one node (client
  certificate of the node CA naming that node's host UUID, pinned). Each event goes to
  the sink in order; the answer says how many were recorded (`accepted`), and
  503 when the sink failed, so the node sends the rest again.
- `POST /v1/enroll`: a node announces itself (`EnrollmentRequest`); the engine's
  callback answers with an `EnrollmentGrant`. A client certificate is optional.
- `GET /v1/ca`: the engine's server CA (PEM), for nodes that check it against its
  fingerprint.

Embeddable: run it in the engine's own loop with `start()`/`stop()`, or mount `app`.
"""

from __future__ import annotations

import json
import logging
import ssl
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from pydantic import ValidationError

from overt.bus.base import EventSink
from overt.bus.direct.http import CA_PATH, ENROLL_PATH, EVENTS_PATH
from overt.bus.direct.tls import TlsFiles, peer_certificate
from overt.clock import Clock
from overt.pki.certs import fingerprint, host_uuid_of
from overt.pki.expiry import expired
from overt.protocol import ErrorCode, EventEnvelope, ProtocolViolation, decode_event
from overt.protocol.enrollment import EnrollmentGrant, EnrollmentRequest

log = logging.getLogger(__name__)

# The engine's decision on a node that announces itself: (request, fingerprint of the
# client certificate it showed, if any) -> grant (pending_approval, approved, rejected).
EnrollCallback = Callable[[EnrollmentRequest, str | None], Awaitable[EnrollmentGrant]]

# Whether a node certificate (host UUID, fingerprint) is the host's current one: the
# engine pins each host's certificate; an old key or a removed host's is refused.
PinCheck = Callable[[uuid.UUID, str], Awaitable[bool]]

MAX_BODY_BYTES = 16 << 20  # a batch of events of an enrolled node
# An enrollment request comes from anyone: a CSR and a page of capabilities.
MAX_ENROLL_BYTES = 64 << 10


class NodeGateway:
    """The HTTPS server nodes talk to; `port=0` binds a free port (see `port`)."""

    def __init__(self, tls: TlsFiles, *, published_ca: Path | None = None,
                 host: str = "0.0.0.0", port: int = 8444,  # noqa: S104
                 sink: EventSink | None = None, enroll: EnrollCallback | None = None,
                 pins: PinCheck | None = None, clock: Clock | None = None) -> None:
        self.tls = tls
        # GET /v1/ca: the CA nodes trust for the engine (not the one that certifies nodes).
        self.published_ca = published_ca or tls.ca_file
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self._sink = sink
        self._enroll = enroll
        self._pins = pins
        self.clock = clock or Clock()
        self._ssl: ssl.SSLContext | None = None
        self._runner: web.AppRunner | None = None
        self.app = web.Application(client_max_size=MAX_BODY_BYTES)
        self.app.router.add_post(EVENTS_PATH, self._events)
        self.app.router.add_post(ENROLL_PATH, self._enroll_node)
        self.app.router.add_get(CA_PATH, self._ca)

    @property
    def running(self) -> bool:
        return self._runner is not None

    def set_sink(self, sink: EventSink) -> None:
        self._sink = sink

    def set_enroll(self, enroll: EnrollCallback) -> None:
        self._enroll = enroll

    def ssl_context(self) -> ssl.SSLContext:
        """Client certificates are optional at TLS level (enrollment); /v1/events requires one."""
        return self.tls.server_context(client_certs=ssl.CERT_OPTIONAL)

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        self._ssl = self.ssl_context()
        site = web.TCPSite(self._runner, self.host, self.requested_port, ssl_context=self._ssl)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        log.info("node gateway listening on https://%s:%d", self.host, self.port)

    def reload_certificate(self) -> None:
        """Serve the renewed engine certificate (and trust the renewed CA) from now on."""
        if self._ssl is not None:
            self._ssl.load_cert_chain(self.tls.cert_file, self.tls.key_file)
            self._ssl.load_verify_locations(cafile=self.tls.ca_file)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers -------------------------------------------------------------------------

    async def _events(self, request: web.Request) -> web.Response:
        cert = peer_certificate(request)
        node = host_uuid_of(cert) if cert is not None else None
        if cert is None or node is None:
            return _error(403, "events need the node's certificate from the engine CA")
        if expired(cert, self.clock.now()):
            return _error(403, f"the certificate of node {node} has expired; the node renews "
                          "it through /v1/enroll", accepted=0)
        if self._pins is not None and not await self._pins(node, fingerprint(cert)):
            log.warning("refused events of node %s: its certificate %s is not the one the "
                        "engine issued it last (an old key, or a removed host)", node,
                        fingerprint(cert)[:23], extra={"peer": request.remote})
            return _error(403, f"the certificate of node {node} is not its current one (an "
                          "old key, or the host was removed); enroll the node again",
                          accepted=0)
        if self._sink is None:
            return _error(503, "this engine does not take events yet", accepted=0)
        try:
            events = _decode_batch(await request.read())
        except ProtocolViolation as violation:
            log.warning("refused malformed events from node %s: %s", node, violation)
            return _error(400, str(violation), accepted=0)
        stranger = next((e for e in events if e.host_uuid != node), None)
        if stranger is not None:
            return _error(403, f"node {node} may not send events of host {stranger.host_uuid}",
                          accepted=0)
        for index, event in enumerate(events):
            try:
                await self._sink(event)
            except Exception as exc:
                log.warning("event %s of node %s not recorded (%s); the node will resend it",
                            event.seq, node, exc or type(exc).__name__)
                return _error(503, "the engine could not record the event; send it again",
                              accepted=index)
        return web.json_response({"accepted": len(events)})

    async def _enroll_node(self, request: web.Request) -> web.Response:
        if self._enroll is None:
            return _error(503, "this engine does not enroll nodes here")
        body = await _read_at_most(request, MAX_ENROLL_BYTES)
        if body is None:
            return _error(413, f"an enrollment request takes at most {MAX_ENROLL_BYTES >> 10} "
                          "KiB")
        try:
            enrollment = EnrollmentRequest.model_validate_json(body)
        except ValidationError as exc:
            return _error(400, f"malformed enrollment request: {exc.errors()[0]['msg']}")
        cert = peer_certificate(request)
        grant = await self._enroll(enrollment, fingerprint(cert) if cert is not None else None)
        log.info("node %s (%s) asked to enroll: %s", enrollment.host_uuid, enrollment.hostname,
                 grant.status.value)
        return web.Response(text=grant.model_dump_json(), content_type="application/json")

    async def _ca(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.published_ca.read_bytes(),
                            content_type="application/x-pem-file")


async def _read_at_most(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is (or declares to be) larger than `limit`: refused
    before it is read."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    while chunk := await request.content.read(65536):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _decode_batch(body: bytes) -> list[EventEnvelope]:
    try:
        items = json.loads(body)
    except ValueError:
        raise ProtocolViolation(ErrorCode.BAD_REQUEST, "events are not JSON") from None
    if not isinstance(items, list):
        items = [items]
    return [decode_event(json.dumps(item)) for item in items]


def _error(status: int, message: str, **extra: object) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)
