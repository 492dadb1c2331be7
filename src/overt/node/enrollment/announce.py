"""Announcing a node to its engine (`POST {engine_url}/v1/enroll`) until it is approved.

The engine's TLS is checked against the engine CA the node trusts (and the engine's
name, ENGINE_SERVER_NAME): the configured one, or the one fetched from
`{engine_url}/v1/ca` if it matches the node's configured CA fingerprint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable

import aiohttp

from overt.bus.direct.http import CA_PATH, ENROLL_PATH
from overt.bus.direct.tls import ENGINE_SERVER_NAME
from overt.node.identity import IdentityError, NodeIdentity
from overt.pki.expiry import expired
from overt.protocol.enrollment import EnrollmentGrant, EnrollmentRequest, EnrollmentStatus

log = logging.getLogger(__name__)

REJECTED_RETRY_S = 60.0
TIMEOUT_S = 15.0


class EnrollmentClient:
    """Asks the engine for a certificate every `interval_s` until it gets one."""

    def __init__(self, engine_url: str, identity: NodeIdentity, interval_s: float = 5.0) -> None:
        self.engine_url = engine_url.rstrip("/")
        self.identity = identity
        self.interval_s = interval_s

    async def enroll(self, request: Callable[[], EnrollmentRequest]) -> EnrollmentGrant:
        """Announce this node until the engine approves it; return the approved grant."""
        async with aiohttp.ClientSession() as session:
            while True:
                delay = self.interval_s
                try:
                    grant = await self._announce(session, request())
                except (aiohttp.ClientError, TimeoutError, OSError, IdentityError,
                        ValueError) as exc:
                    log.warning("cannot enroll with the engine at %s: %s", self.engine_url,
                                exc or type(exc).__name__)
                else:
                    if grant.status is EnrollmentStatus.APPROVED:
                        return grant
                    if grant.status is EnrollmentStatus.REJECTED:
                        log.error("the engine rejected this node: %s", grant.message or
                                  "no reason given")
                        delay = REJECTED_RETRY_S
                    else:
                        log.info("waiting for an administrator to approve this node at %s",
                                 self.engine_url)
                await asyncio.sleep(delay)

    async def ask_once(self, request: EnrollmentRequest) -> EnrollmentGrant:
        """One announce (an enrolled node renewing its certificate with its key)."""
        async with aiohttp.ClientSession() as session:
            return await self._announce(session, request)

    async def _announce(self, session: aiohttp.ClientSession,
                        request: EnrollmentRequest) -> EnrollmentGrant:
        context = await self._engine_context(session)
        async with session.post(self.engine_url + ENROLL_PATH,
                                data=request.model_dump_json(), ssl=context,
                                server_hostname=ENGINE_SERVER_NAME,
                                headers={"Content-Type": "application/json"},
                                timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as response:
            text = await response.text()
            if response.status != 200:
                raise ValueError(f"the engine answered {response.status}: {text[:300]}")
            return EnrollmentGrant.model_validate_json(text)

    def _show_certificate(self, context: ssl.SSLContext) -> None:
        """An enrolled node proves itself with its certificate (a renewal needs that fresh
        proof); not an expired one, which the engine's TLS would refuse outright."""
        try:
            cert = self.identity.certificate()
        except (OSError, ValueError):
            return
        if expired(cert, self.identity.clock.now()):
            return
        with contextlib.suppress(ssl.SSLError, OSError):  # not for this node's key
            context.load_cert_chain(self.identity.cert_file, self.identity.key_file)

    async def _engine_context(self, session: aiohttp.ClientSession) -> ssl.SSLContext:
        if self.identity.trusted_ca_file() is None:
            async with session.get(self.engine_url + CA_PATH, ssl=False,
                                   timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as response:
                if response.status != 200:
                    raise ValueError(f"the engine's CA is not available ({response.status})")
                self.identity.trust_ca(await response.text())
        ca_file = self.identity.trusted_ca_file()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cafile=ca_file)  # and the name checked: the engine's
        self._show_certificate(context)
        return context
