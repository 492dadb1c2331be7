"""A node's identity in its data directory: key, self-signed and CA-issued certificates,
the engine CA it trusts, where its engine's gateway is, and (fully managed mode) its
own broker account.

Until the engine CA issues a certificate the node shows a self-signed one.
The node trusts only an engine CA it was given: the file (`engine_ca_file`), or one
an engine offers that matches the configured fingerprint (`ca_fingerprint`) or comes
with a proof made with the node's one-time enrollment token. Never the first one
offered: whoever the node trusts drives its libvirt.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from overt.bus.direct.tls import TlsFiles
from overt.clock import Clock
from overt.pki import tokens
from overt.pki.certs import (
    PrivateKey,
    cert_pem,
    certificate_request,
    endorsed,
    fingerprint,
    host_uuid_of,
    key_fingerprint,
    key_pem,
    load_cert,
    load_key,
    new_key,
    same_fingerprint,
    self_signed,
    write_private,
)
from overt.protocol.enrollment import BrokerCredentials, EnrollmentGrant, EnrollmentStatus

log = logging.getLogger(__name__)


class IdentityError(ValueError):
    """A certificate or CA that the node must not accept; the message says why."""


class NodeIdentity:
    """Files below `data_dir`: node.key (0600), bootstrap.pem, node.pem, engine-ca.pem,
    enrollment.json, broker.json (0600: the node's broker account, fully managed mode)."""

    def __init__(self, data_dir: Path, engine_ca_file: Path | None = None, *,
                 ca_fingerprint: str | None = None, enroll_token: str | None = None,
                 clock: Clock | None = None) -> None:
        self.data_dir = data_dir
        self.engine_ca_file = engine_ca_file
        self.ca_fingerprint = ca_fingerprint
        self.enroll_token = enroll_token
        self.clock = clock or Clock()
        self.key_file = data_dir / "node.key"
        self.self_signed_file = data_dir / "bootstrap.pem"
        self.cert_file = data_dir / "node.pem"
        self.ca_file = data_dir / "engine-ca.pem"
        self.enrollment_file = data_dir / "enrollment.json"
        self.broker_file = data_dir / "broker.json"

    # -- key and certificates -----------------------------------------------------------

    def key(self) -> PrivateKey:
        if not self.key_file.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_private(self.key_file, key_pem(new_key()))
            log.info("made the node's private key %s", self.key_file)
        return load_key(self.key_file)

    def self_signed_cert(self, host_uuid: uuid.UUID, names: list[str]) -> Path:
        """The self-signed certificate shown before enrollment (made when missing)."""
        if not self._current(self.self_signed_file, host_uuid):
            cert = self_signed(self.key(), str(host_uuid), names, now=self.clock.now())
            self.self_signed_file.write_bytes(cert_pem(cert))
        log.info("not enrolled yet; this node's key fingerprint is %s (compare it with the "
                 "one the engine shows before approving or adding the host)",
                 self.key_fingerprint())
        return self.self_signed_file

    def key_fingerprint(self) -> str:
        return key_fingerprint(self.key().public_key())

    def token_proof(self, ca_pem: str, exchange_key: str | None) -> str | None:
        """With an enrollment token: the token sealed for the engine that introduced
        itself with `ca_pem` and `exchange_key`, bound to our key (None without a token)."""
        if self.enroll_token is None or exchange_key is None:
            return None
        ca = fingerprint(_load(ca_pem, "the engine CA"))
        try:
            return tokens.seal(self.enroll_token, exchange_key, self.key_fingerprint(), ca)
        except ValueError:
            raise IdentityError("the engine's exchange key is not a P-256 point") from None

    def csr_pem(self, host_uuid: uuid.UUID, names: list[str]) -> str:
        return certificate_request(self.key(), str(host_uuid), names).decode()

    def enrolled(self, host_uuid: uuid.UUID) -> bool:
        return self._current(self.cert_file, host_uuid) and self.trusted_ca_file() is not None

    def files(self) -> TlsFiles:
        """The CA-issued identity (only once enrolled)."""
        ca = self.trusted_ca_file()
        if ca is None or not self.cert_file.exists():
            raise IdentityError("the node is not enrolled yet")
        return TlsFiles(ca, self.cert_file, self.key_file)

    def _current(self, path: Path, host_uuid: uuid.UUID) -> bool:
        """A certificate for this host and this key (a reinstalled host gets new ones)."""
        if not path.exists() or not self.key_file.exists():
            return False
        cert = load_cert(path.read_bytes())
        return host_uuid_of(cert) == host_uuid and \
            cert.public_key() == self.key().public_key()

    # -- the engine CA ------------------------------------------------------------------

    def trusted_ca_file(self) -> Path | None:
        """The configured engine CA (or its renewal, kept in the data directory), else the
        one accepted before, else None."""
        if self.engine_ca_file is not None:
            if self.ca_file.exists() and _renews(load_cert(self.ca_file.read_bytes()),
                                                 load_cert(self.engine_ca_file.read_bytes())):
                return self.ca_file
            return self.engine_ca_file
        return self.ca_file if self.ca_file.exists() else None

    def accept_renewed_ca(self, ca_pem: str) -> bool:
        """Keep the engine CA's renewal (same key and name, later expiry); True if taken."""
        trusted = self.trusted_ca_file()
        offered = _load(ca_pem, "the engine CA")
        if trusted is None or not _renews(offered, load_cert(trusted.read_bytes())):
            return False
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.ca_file.write_bytes(cert_pem(offered))
        log.info("the engine CA was renewed: valid until %s", offered.not_valid_after_utc)
        return True

    def certificate(self) -> x509.Certificate:
        return load_cert(self.cert_file.read_bytes())

    def on_pre_split_ca(self) -> bool:
        """Whether this node's certificate was issued by the engine CA itself (an engine
        of one CA, before it had a node CA): the node then renews early, to move to the
        node CA before the engine stops accepting the old one."""
        trusted = self.trusted_ca_file()
        if trusted is None or not self.cert_file.exists():
            return False
        ca, cert = load_cert(trusted.read_bytes()), self.certificate()
        if cert.issuer != ca.subject:
            return False
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def trust_ca(self, ca_pem: str, proof: str | None = None,
                 exchange_key: str | None = None) -> None:
        """Accept `ca_pem` as the engine CA if it is the one already trusted, or matches the
        configured fingerprint, or comes with the token's proof (`proof`, over the CA and
        the engine's `exchange_key`)."""
        offered = _load(ca_pem, "the engine CA")
        trusted = self.trusted_ca_file()
        if trusted is not None:
            current = load_cert(trusted.read_bytes())
            if current != offered and not _same_ca(current, offered):
                raise IdentityError(
                    f"this node trusts another engine CA ({trusted}); to move it to a new "
                    f"engine, remove {self.data_dir} on the node and restart the agent")
            return
        offered_fp = fingerprint(offered)
        if self.ca_fingerprint is not None and same_fingerprint(self.ca_fingerprint, offered_fp):
            how = "its configured fingerprint"
        elif self.enroll_token is not None and exchange_key is not None and tokens.check(
                tokens.engine_proof(tokens.digest(self.enroll_token), offered_fp,
                                    exchange_key), proof):
            how = "the enrollment token"
        elif self.ca_fingerprint is None and self.enroll_token is None:
            raise IdentityError(
                "this node trusts no engine yet: start it with --engine-ca-file (the "
                "engine's pki/ca.pem), --engine-ca-fingerprint, or the --enroll-token "
                "`overt host add` printed")
        else:
            raise IdentityError(f"the engine CA offered ({offered_fp}) is not the one this "
                                "node was told to trust (fingerprint or enrollment token)")
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.ca_file.write_bytes(cert_pem(offered))
        log.info("trusting the engine CA %s (checked against %s; kept in %s)", offered_fp,
                 how, self.ca_file)

    # -- enrollment ---------------------------------------------------------------------

    def accept_grant(self, grant: EnrollmentGrant, host_uuid: uuid.UUID,
                     gateway_url: str | None) -> None:
        """Store the certificate of an approved enrollment after checking it is ours."""
        if grant.status is not EnrollmentStatus.APPROVED or grant.certificate_pem is None:
            raise IdentityError(f"enrollment is {grant.status.value}, not approved with a "
                                "certificate")
        if grant.ca_pem is not None:
            self.accept_renewed_ca(grant.ca_pem)
        ca_file = self.trusted_ca_file()
        if ca_file is None:
            raise IdentityError("the grant carries no engine CA and none is trusted yet")
        # The node CA certifies nodes only: this node never trusts it for a peer (so a
        # certificate of it naming the engine convinces no node), only to check its own
        # certificate, once the server CA it trusts has vouched for it.
        ca = load_cert(ca_file.read_bytes())
        if grant.node_ca_pem is not None:
            node_ca = _load(grant.node_ca_pem, "the node CA")
            if not endorsed(ca, node_ca, grant.node_ca_endorsement):
                raise IdentityError("the grant's node CA is not vouched for by the engine CA "
                                    "this node trusts")
            ca = node_ca
        cert = _load(grant.certificate_pem, "the node certificate")
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            raise IdentityError("the node certificate was not issued by the engine's node "
                                "CA") from None
        if cert.public_key() != self.key().public_key():
            raise IdentityError("the node certificate is not for this node's key")
        if host_uuid_of(cert) != host_uuid:
            raise IdentityError(f"the node certificate names host {host_uuid_of(cert)}, "
                                f"this node is {host_uuid}")
        # Whole or not at all: the node's TLS reads it at any time (a renewal replaces it).
        written = self.cert_file.with_name(self.cert_file.name + ".tmp")
        written.write_bytes(cert_pem(cert))
        written.replace(self.cert_file)
        self.enrollment_file.write_text(json.dumps({
            "host_id": str(grant.host_id) if grant.host_id else None,
            "gateway_url": grant.gateway_url or gateway_url,
        }))
        if grant.broker is not None:
            write_private(self.broker_file, grant.broker.model_dump_json().encode())
        log.info("enrolled: certificate %s issued by the engine CA%s", fingerprint(cert),
                 f", broker account {grant.broker.username}" if grant.broker else "")

    def broker_credentials(self) -> BrokerCredentials | None:
        """The node's own broker account from its last enrollment, if the engine gave one."""
        try:
            return BrokerCredentials.model_validate_json(self.broker_file.read_bytes())
        except FileNotFoundError:
            return None
        except ValueError:
            log.error("%s is damaged; the node asks the engine for a new broker account",
                      self.broker_file)
            return None

    def gateway_url(self) -> str | None:
        try:
            value = json.loads(self.enrollment_file.read_text()).get("gateway_url")
        except (OSError, ValueError):
            return None
        return value if isinstance(value, str) else None


def _same_ca(a: x509.Certificate, b: x509.Certificate) -> bool:
    return a.subject == b.subject and a.public_key() == b.public_key()


def _renews(new: x509.Certificate, old: x509.Certificate) -> bool:
    """`new` is `old` renewed: the same CA (name and key), valid longer."""
    return _same_ca(new, old) and new.not_valid_after_utc > old.not_valid_after_utc


def _load(pem: str, what: str) -> x509.Certificate:
    try:
        return load_cert(pem.encode())
    except ValueError:
        raise IdentityError(f"{what} is not a PEM certificate") from None
