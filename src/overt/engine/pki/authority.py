"""The engine's PKI in its data directory: the CA, the engine's own certificate, node certs."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from overt.bus.direct.tls import ENGINE_SERVER_NAME
from overt.clock import Clock
from overt.pki.certs import (
    CertificateAuthority,
    cert_pem,
    certificate_request,
    fingerprint,
    key_pem,
    load_cert,
    new_key,
    write_private,
)
from overt.pki.expiry import CertificateState, Expiry, expiry_of, state_of

ENGINE_CN = "engine"


class EnginePki:
    """Files: ca.pem, ca.key, engine.pem, engine.key (keys owner-only)."""

    def __init__(self, directory: Path, *, addresses: list[str],
                 clock: Clock | None = None) -> None:
        self.directory = directory
        self.addresses = addresses
        self.clock = clock or Clock()

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def cert_file(self) -> Path:
        return self.directory / "engine.pem"

    @property
    def key_file(self) -> Path:
        return self.directory / "engine.key"

    def ensure(self) -> None:
        """Create the CA and the engine certificate when they do not exist yet."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.ca_file.exists():
            CertificateAuthority.create(f"Overt engine CA {uuid.uuid4().hex[:8]}",
                                        now=self.clock.now()).save(self.directory)
        if not self.cert_file.exists() or not self._names_engine():
            self.issue_engine_certificate()

    def _names_engine(self) -> bool:
        cert = load_cert(self.cert_file.read_bytes())
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        return ENGINE_SERVER_NAME in sans.get_values_for_type(x509.DNSName)

    def issue_engine_certificate(self) -> None:
        """A new key and certificate for the engine (API, gateway, client of the nodes)."""
        key = new_key()
        names = sorted({ENGINE_SERVER_NAME, "localhost", "127.0.0.1", socket.gethostname(),
                        *self.addresses})
        cert = self.ca.sign(certificate_request(key, ENGINE_CN, names), now=self.clock.now())
        write_private(self.key_file, key_pem(key))
        self.cert_file.write_bytes(cert_pem(cert))

    @property
    def ca(self) -> CertificateAuthority:
        return CertificateAuthority.load(self.directory)

    def engine_certificate(self) -> x509.Certificate:
        return load_cert(self.cert_file.read_bytes())

    def renew_due(self, *, force_expired_only: bool = False) -> list[str]:
        """Renew the CA (same key: what it issued stays valid) and the engine certificate
        when due (`force_expired_only`: only what has expired, for recovery). Returns what
        was renewed."""
        now, renewed = self.clock.now(), []
        wanted = {Expiry.EXPIRED} if force_expired_only else {Expiry.RENEW, Expiry.ALERT,
                                                               Expiry.EXPIRED}
        ca = self.ca
        if expiry_of(ca.cert, now) in wanted:
            ca.renewed(now).save(self.directory)
            renewed.append("CA")
        engine = self.engine_certificate()
        if expiry_of(engine, now) in wanted or renewed:
            self.issue_engine_certificate()
            renewed.append("engine")
        return renewed

    def states(self) -> list[CertificateState]:
        now = self.clock.now()
        return [state_of("CA", self.ca.cert, now),
                state_of("engine", self.engine_certificate(), now)]

    def reissue_node_certificate(self, current_pem: str, host_uuid: uuid.UUID) -> str:
        """A new certificate for the key a node's current (maybe expired) one certifies: the
        engine pinned that key, so no request from the node is needed (recovery)."""
        current = load_cert(current_pem.encode())
        cert = self.ca.issue(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(host_uuid))]),
            current.public_key(),  # type: ignore[arg-type]
            [x509.UniformResourceIdentifier(f"urn:uuid:{host_uuid}")], now=self.clock.now())
        return cert_pem(cert).decode()

    def ca_pem(self) -> str:
        return self.ca_file.read_text()

    def ca_fingerprint(self) -> str:
        return fingerprint(load_cert(self.ca_file.read_bytes()))

    def issue_node_certificate(self, csr_pem: str, host_uuid: uuid.UUID) -> str:
        """A node's certificate: CN and its only SAN carry its host UUID.

        Never a name the node asks for: peers identify a node by its UUID (and its
        pinned fingerprint), and a node must not get a certificate for the engine's or
        the broker's host name."""
        cert = self.ca.sign(csr_pem.encode(), common_name=str(host_uuid),
                            names=[f"urn:uuid:{host_uuid}"], now=self.clock.now())
        return cert_pem(cert).decode()
