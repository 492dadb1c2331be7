"""How the engine talks to a node that has no certificate yet (adding a host by address)."""

from __future__ import annotations

from typing import Protocol

from overt.bus.direct.engine import DirectEngineTransport
from overt.protocol.enrollment import EngineIntroduction, EnrollmentGrant, EnrollmentRequest


class UnenrolledNodeClient(Protocol):
    async def request_enrollment(self, address: str, port: int,
                                 introduction: EngineIntroduction) -> tuple[EnrollmentRequest,
                                                                             str]:
        """Introduce the engine to the node; the node answers with its CSR and facts.

        Also returns the key fingerprint of the certificate the node showed in TLS (a
        node proves it holds that key in the handshake)."""

    async def deliver_grant(self, address: str, port: int, grant: EnrollmentGrant) -> None:
        """Give the node its certificate (and broker account)."""


class DirectUnenrolledNodeClient:
    """Adding a host by address: the engine calls the node's enrollment endpoints over HTTPS."""

    def __init__(self, transport: DirectEngineTransport) -> None:
        self.transport = transport

    async def request_enrollment(self, address: str, port: int,
                                 introduction: EngineIntroduction) -> tuple[EnrollmentRequest,
                                                                             str]:
        return await self.transport.request_enrollment(f"https://{address}:{port}",
                                                       introduction)

    async def deliver_grant(self, address: str, port: int, grant: EnrollmentGrant) -> None:
        await self.transport.send_certificate(f"https://{address}:{port}", grant)
