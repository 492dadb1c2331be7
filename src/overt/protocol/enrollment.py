"""Enrollment: how a node gets its certificate (and broker credentials) from the engine.

Two ways, both ending with the engine CA signing the node's CSR:
- the node announces itself to the engine's node gateway (`POST /v1/enroll`);
  the host is `pending_approval` until an administrator approves it, and the node
  asks again until it gets its certificate;
- an administrator adds the host by address: the engine calls the node's enrollment
  endpoints (`POST /v1/enrollment/request`, then `/v1/enrollment/certificate`).
"""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import Field

from overt.protocol.hardware import HardwareFacts
from overt.protocol.host import HostCapabilities
from overt.protocol.vm import WireModel


class EnrollmentStatus(StrEnum):
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"


class BrokerCredentials(WireModel):
    """A node's own broker account (fully managed mode); least privilege, per node."""

    url: str = Field(repr=False)  # amqp(s)://user:password@host:port/vhost
    username: str
    command_queue: str
    events_exchange: str
    stats_exchange: str


class EnrollmentRequest(WireModel):
    """What a node sends about itself, with a CSR for its key."""

    host_uuid: UUID
    hostname: str = Field(max_length=255)
    address: str = Field(max_length=255)  # where the engine reaches the node (management network)
    rpc_port: int = Field(54321, gt=0, lt=65536)
    csr_pem: str = Field(max_length=16384)
    capabilities: HostCapabilities
    hardware: HardwareFacts | None = None  # what the administrator sees before approving
    # With an enrollment token: the token sealed for the engine's exchange key, bound to
    # the CSR's key and the engine CA it was introduced to (overt.pki.tokens.seal).
    proof: str | None = Field(None, max_length=512)


class EngineIntroduction(WireModel):
    """The engine's first words to a node it adds by address (enrollment endpoint)."""

    ca_pem: str
    gateway_url: str  # https://ENGINE:PORT of the engine's node gateway
    host_id: UUID  # the engine's id for this host
    # HMAC keyed with the digest of the host's enrollment token over the CA's
    # fingerprint and `exchange_key` (overt.pki.tokens.engine_proof).
    proof: str | None = Field(None, max_length=128)
    exchange_key: str | None = Field(None, max_length=132)  # one-time P-256 key, hex


class EnrollmentGrant(WireModel):
    """The engine's answer: the node's certificate once approved, and where to talk."""

    status: EnrollmentStatus
    message: str = ""
    host_id: UUID | None = None
    certificate_pem: str | None = None
    ca_pem: str | None = None  # the server CA: what the node trusts for the engine, broker
    node_ca_pem: str | None = None  # the CA of the node's certificate (trusted by the engine)
    node_ca_endorsement: str | None = Field(None, max_length=512)  # the server CA vouches
    gateway_url: str | None = None  # events (direct mode) and renewals go here
    broker: BrokerCredentials | None = None
