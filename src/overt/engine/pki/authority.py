"""The engine's PKI in its data directory: two CAs, the engine's certificate, the broker's.

- The **server CA** (`ca.pem`, `ca.key`) certifies the engine (API, gateway, client of
  the nodes) and the broker. It is what everybody trusts to reach the engine: nodes
  (given as a file, a fingerprint or through a token), API clients (`pki-resource`).
- The **node CA** (`node-ca.pem`, `node-ca.key`) certifies nodes, and nothing else. It
  signs what anyone on the network may ask for (`/v1/enroll`, once approved), so only
  the engine trusts it, and only for nodes (by host UUID and pinned fingerprint). Nodes
  and API clients never trust it: a certificate it signed for the engine's or the
  broker's name (a flaw in what it accepts, a stolen request) convinces nobody.

Several engine processes may share the data directory (an api process per core):
whatever writes these files (creation, renewal) holds an exclusive lock on
`pki/.lock` and looks again once it has it, so two processes that find a
certificate due at the same moment renew it once, and never leave one's key beside
the other's certificate; readers that load a key with its certificate hold the lock
shared (`reading`).

Two CAs rather than name constraints on one: a node's certificate names only
`urn:uuid:HOST`, and OpenSSL neither constrains URI names without a host part nor
keeps a constraint from matching a UUID-shaped common name; a CA nobody but the
engine trusts needs no such rules to be right.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from overt.bus.direct.tls import ENGINE_SERVER_NAME
from overt.clock import Clock
from overt.engine.pki.broker_tls import BrokerTls
from overt.pki.certs import (
    CertificateAuthority,
    cert_pem,
    certificate_request,
    endorse,
    fingerprint,
    key_pem,
    load_cert,
    new_key,
    valid_from,
    write_private,
)
from overt.pki.expiry import CertificateState, Expiry, expiry_of, state_of

ENGINE_CN = "engine"
SERVER_CA = "ca"
NODE_CA = "node-ca"
# The one CA of a data directory made before the split, kept (a copy of its certificate)
# while hosts still show node certificates it issued; removed once none does.
LEGACY_NODE_CA = "legacy-node-ca"
IMAGEIO_CERT_VALIDITY = dt.timedelta(days=30)


class EnginePki:
    """Files: ca.pem/.key (server CA), node-ca.pem/.key (node CA), engine.pem/.key (keys
    owner-only); the broker's certificate where its RabbitMQ reads it (`broker`)."""

    def __init__(self, directory: Path, *, addresses: list[str],
                 clock: Clock | None = None, broker: BrokerTls | None = None) -> None:
        self.directory = directory
        self.addresses = addresses
        self.clock = clock or Clock()
        self.broker = broker

    @property
    def ca_file(self) -> Path:
        """The server CA: what nodes and API clients trust to reach the engine."""
        return self.directory / f"{SERVER_CA}.pem"

    @property
    def node_ca_file(self) -> Path:
        """The node CA: what the engine trusts for nodes (with their pins)."""
        return self.directory / f"{NODE_CA}.pem"

    @property
    def legacy_ca_file(self) -> Path:
        """The pre-split CA, accepted for nodes during the upgrade (absent otherwise)."""
        return self.directory / f"{LEGACY_NODE_CA}.pem"

    @property
    def node_trust_file(self) -> Path:
        """What the engine's TLS trusts for nodes: the node CA, and the legacy CA while
        hosts still use it (pins are checked on top)."""
        return self.directory / "node-trust.pem"

    @property
    def cert_file(self) -> Path:
        return self.directory / "engine.pem"

    @property
    def key_file(self) -> Path:
        return self.directory / "engine.key"

    @contextlib.contextmanager
    def _lock(self, operation: int) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with (self.directory / ".lock").open("ab") as lock:
            fcntl.flock(lock, operation)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """Hold while loading a key with its certificate: no process replaces them meanwhile."""
        return self._lock(fcntl.LOCK_SH)

    def ensure(self) -> None:
        """Create the CAs, the engine's and the broker's certificates when missing."""
        with self._lock(fcntl.LOCK_EX):
            self._ensure()

    def _ensure(self) -> None:
        tag = uuid.uuid4().hex[:8]
        if self.ca_file.exists() and not self.node_ca_file.exists():
            # A data directory of one CA (before the split): what it issued to nodes stays
            # accepted until each host has moved to the node CA (`retire_legacy_ca`).
            self.legacy_ca_file.write_bytes(self.ca_file.read_bytes())
        if not self.ca_file.exists():
            CertificateAuthority.create(f"Overt engine CA {tag}",
                                        now=self.clock.now()).save(self.directory, SERVER_CA)
        if not self.node_ca_file.exists():
            CertificateAuthority.create(f"Overt node CA {tag}",
                                        now=self.clock.now()).save(self.directory, NODE_CA)
        self._write_node_trust()
        if not self.cert_file.exists() or not self._names_engine():
            self.issue_engine_certificate()
        if self.broker is not None and not self.broker.current(self.ca):
            self.broker.install(self.ca, now=self.clock.now())

    def _names_engine(self) -> bool:
        cert = load_cert(self.cert_file.read_bytes())
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        return ENGINE_SERVER_NAME in sans.get_values_for_type(x509.DNSName) and \
            cert.issuer == self.ca.cert.subject

    def issue_engine_certificate(self) -> None:
        """A new key and certificate for the engine (API, gateway, client of the nodes)."""
        key = new_key()
        names = sorted({ENGINE_SERVER_NAME, "localhost", "127.0.0.1", socket.gethostname(),
                        *self.addresses})
        cert = self.ca.sign(certificate_request(key, ENGINE_CN, names), now=self.clock.now())
        write_private(self.key_file, key_pem(key))
        tmp = self.cert_file.with_suffix(".pem.tmp")
        tmp.write_bytes(cert_pem(cert))
        tmp.replace(self.cert_file)

    @property
    def ca(self) -> CertificateAuthority:
        """The server CA."""
        return CertificateAuthority.load(self.directory, SERVER_CA)

    @property
    def node_ca(self) -> CertificateAuthority:
        return CertificateAuthority.load(self.directory, NODE_CA)

    def engine_certificate(self) -> x509.Certificate:
        return load_cert(self.cert_file.read_bytes())

    def renew_due(self, *, force_expired_only: bool = False) -> list[str]:
        """Renew the CAs (same key: what they issued stays valid), the engine's and the
        broker's certificates when due (`force_expired_only`: only what has expired).
        Returns what was renewed (by this call: nothing if another process just did)."""
        with self._lock(fcntl.LOCK_EX):
            return self._renew_due(force_expired_only)

    def _renew_due(self, force_expired_only: bool) -> list[str]:
        now, renewed = self.clock.now(), []
        wanted = {Expiry.EXPIRED} if force_expired_only else {Expiry.RENEW, Expiry.ALERT,
                                                               Expiry.EXPIRED}
        server_ca = self.ca
        if expiry_of(server_ca.cert, now) in wanted:
            server_ca = server_ca.renewed(now)
            server_ca.save(self.directory, SERVER_CA)
            renewed.append("server CA")
        node_ca = self.node_ca
        if expiry_of(node_ca.cert, now) in wanted:
            node_ca.renewed(now).save(self.directory, NODE_CA)
            self._write_node_trust()
            renewed.append("node CA")
        if expiry_of(self.engine_certificate(), now) in wanted or "server CA" in renewed:
            self.issue_engine_certificate()
            renewed.append("engine")
        if self.broker is not None:
            cert = self.broker.certificate()
            if cert is None or expiry_of(cert, now) in wanted or "server CA" in renewed:
                self.broker.install(server_ca, now=now)
                renewed.append("broker")
        return renewed

    def states(self) -> list[CertificateState]:
        now = self.clock.now()
        states = [state_of("server CA", self.ca.cert, now),
                  state_of("node CA", self.node_ca.cert, now),
                  state_of("engine", self.engine_certificate(), now)]
        broker = self.broker.certificate() if self.broker is not None else None
        if broker is not None:
            states.append(state_of("broker", broker, now))
        return states

    def reissue_node_certificate(self, current_pem: str, host_uuid: uuid.UUID) -> str:
        """A new certificate for the key a node's current (maybe expired) one certifies: the
        engine pinned that key, so no request from the node is needed (recovery)."""
        current = load_cert(current_pem.encode())
        cert = self.node_ca.issue(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(host_uuid))]),
            current.public_key(),  # type: ignore[arg-type]
            [x509.UniformResourceIdentifier(f"urn:uuid:{host_uuid}")], now=self.clock.now())
        return cert_pem(cert).decode()

    def issue_imageio_certificate(self, node_pem: str, host_uuid: uuid.UUID,
                                  address: str) -> str:
        """A server-CA certificate for a node's own key (the one its node certificate
        certifies), naming the host's address: what the node's imageio daemon serves, so
        the SDK's clients, which trust the server CA only, reach it. Server authentication
        only (never a client of the broker or the nodes), never the engine's name, and
        short-lived (the node gets a new one with a later transfer)."""
        if address.lower() in (ENGINE_SERVER_NAME, ENGINE_CN, "localhost"):
            raise ValueError(f"a node's image server cannot be named {address}")
        try:
            name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(address))
        except ValueError:
            name = x509.DNSName(address)
        now = self.clock.now()
        ca = self.ca
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                        f"imageio {host_uuid}")]))
            .issuer_name(ca.cert.subject)
            .public_key(load_cert(node_pem.encode()).public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid_from(now))
            .not_valid_after(min(now + IMAGEIO_CERT_VALIDITY, ca.cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([name]), critical=False)
            .sign(ca.key, hashes.SHA256()))
        return cert_pem(cert).decode()

    def ca_pem(self) -> str:
        """The server CA (PEM), which nodes trust for the engine and the broker."""
        return self.ca_file.read_text()

    def node_ca_pem(self) -> str:
        return self.node_ca_file.read_text()

    def node_ca_endorsement(self) -> str:
        """The server CA's signature over the node CA: how a node, which trusts the server
        CA only, knows its certificate's issuer is its engine's."""
        return endorse(self.ca, self.node_ca.cert)

    def ca_fingerprint(self) -> str:
        return fingerprint(load_cert(self.ca_file.read_bytes()))

    def issued_by_node_ca(self, cert: x509.Certificate) -> bool:
        return cert.issuer == self.node_ca.cert.subject

    def legacy_ca(self) -> x509.Certificate | None:
        """The pre-split CA while node certificates of it are still accepted, else None."""
        try:
            return load_cert(self.legacy_ca_file.read_bytes())
        except FileNotFoundError:
            return None

    def issued_by_legacy_ca(self, cert: x509.Certificate) -> bool:
        """Whether `cert` is a node certificate of the pre-split CA (signature checked),
        accepted or not any more: what a host must be moved off."""
        legacy = self.legacy_ca()
        if legacy is None:
            legacy = self.ca.cert  # the pre-split CA is the server CA (same name and key)
        if cert.issuer != legacy.subject:
            return False
        try:
            cert.verify_directly_issued_by(legacy)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def accepted_for_node(self, cert: x509.Certificate) -> bool:
        """Whether the engine takes `cert` as a node's (its pin is checked apart): the node
        CA's, or the legacy CA's during the upgrade."""
        if self.issued_by_node_ca(cert):
            return True
        return self.legacy_ca() is not None and self.issued_by_legacy_ca(cert)

    def retire_legacy_ca(self) -> bool:
        """No host uses the pre-split CA any more: stop accepting it for nodes (the trust
        file no longer carries it). True if it was still accepted."""
        with self._lock(fcntl.LOCK_EX):
            if not self.legacy_ca_file.exists():
                return False
            self.legacy_ca_file.unlink()
            self._write_node_trust()
            return True

    def _write_node_trust(self) -> None:
        pems = [self.node_ca_file.read_bytes()]
        if self.legacy_ca_file.exists():
            pems.append(self.legacy_ca_file.read_bytes())
        tmp = self.node_trust_file.with_suffix(".pem.tmp")
        tmp.write_bytes(b"".join(p if p.endswith(b"\n") else p + b"\n" for p in pems))
        tmp.replace(self.node_trust_file)

    def issue_node_certificate(self, csr_pem: str, host_uuid: uuid.UUID) -> str:
        """A node's certificate, from the node CA: CN and its only SAN carry its host UUID.

        Never a name the node asks for: peers identify a node by its UUID (and its
        pinned fingerprint), and a node must not get a certificate for the engine's or
        the broker's host name."""
        cert = self.node_ca.sign(csr_pem.encode(), common_name=str(host_uuid),
                                 names=[f"urn:uuid:{host_uuid}"], now=self.clock.now())
        return cert_pem(cert).decode()
