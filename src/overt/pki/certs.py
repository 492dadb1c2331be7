"""Making and reading keys, requests and certificates.

The engine keeps two CAs: the node CA signs one certificate per node (its identity
is the host UUID in the subject's CN and a SAN URI `urn:uuid:...`), the server CA
the engine's and the broker's (see overt.engine.pki.authority).
"""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey
PublicKey = ec.EllipticCurvePublicKey

CA_VALIDITY = dt.timedelta(days=3650)
CERT_VALIDITY = dt.timedelta(days=825)


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_key(path: Path) -> PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} does not hold an EC private key")
    return key


def load_cert(data: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data)


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by its owner only. The temporary file is this call's
    own: engine processes started together (api, workers, monitors) may write the same
    file at once, and one's rename must not take another's temporary file away."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.touch(mode=0o600)
        tmp.chmod(0o600)
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint as colon-separated hex, as administrators compare them."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def key_fingerprint(key: PublicKeyTypes) -> str:
    """SHA-256 of a public key (its SubjectPublicKeyInfo), as colon-separated hex.

    This names a node's key, whatever certificate or request carries it: the node logs
    it at start, the engine shows it on the host, the administrator compares the two."""
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex(":").upper()


def csr_key_fingerprint(csr_pem: str) -> str:
    """The key fingerprint of a PEM certificate request (ValueError if it is not one)."""
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    return key_fingerprint(csr.public_key())


def same_fingerprint(a: str | None, b: str | None) -> bool:
    """Compare two fingerprints as an administrator types them (case, colons, spaces)."""
    if not a or not b:
        return False
    def norm(value: str) -> str:
        return "".join(c for c in value.upper() if c in "0123456789ABCDEF")
    return hmac.compare_digest(norm(a), norm(b))


def _san(names: list[str]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in names:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            if name.startswith("urn:"):
                result.append(x509.UniformResourceIdentifier(name))
            else:
                result.append(x509.DNSName(name))
    return result


def certificate_request(key: PrivateKey, common_name: str, names: list[str]) -> bytes:
    """A PEM CSR for `common_name` with `names` (DNS names, IPs, urn:uuid:...) as SANs."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .add_extension(x509.SubjectAlternativeName(_san(names)), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def valid_from(now: dt.datetime) -> dt.datetime:
    """The notBefore of a certificate issued at `now` (the issuer's clock): never after the
    real time, so that a certificate issued by an engine whose clock runs ahead (tests
    move it years forward) is valid for TLS libraries, which use the real time."""
    return min(now, dt.datetime.now(dt.UTC)) - dt.timedelta(minutes=5)


def self_signed(key: PrivateKey, common_name: str, names: list[str], *,
                now: dt.datetime | None = None) -> x509.Certificate:
    """A self-signed certificate, used by a node until the engine CA has issued it one."""
    now = now or dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from(now))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_san(names)), critical=False)
        .sign(key, hashes.SHA256())
    )


@dataclass(frozen=True)
class CertificateAuthority:
    """The engine's CA: a key and a self-signed certificate that signs everything else."""

    key: PrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str, *, now: dt.datetime | None = None,
               key: PrivateKey | None = None) -> CertificateAuthority:
        """A new CA (`key`: keep the old CA's key when renewing it, so issued certs stay valid)."""
        key = key or new_key()
        now = now or dt.datetime.now(dt.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Overt"),
                             x509.NameAttribute(NameOID.COMMON_NAME, name)])
        return cls(key, cls._self_sign(key, subject, now))

    def renewed(self, now: dt.datetime) -> CertificateAuthority:
        """The same CA (key and name) with a new validity: what it issued stays valid."""
        return CertificateAuthority(self.key, self._self_sign(self.key, self.cert.subject, now))

    @staticmethod
    def _self_sign(key: PrivateKey, subject: x509.Name, now: dt.datetime) -> x509.Certificate:
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid_from(now))
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cert

    @classmethod
    def load(cls, directory: Path, name: str = "ca") -> CertificateAuthority:
        """The CA kept in `directory` as NAME.key and NAME.pem."""
        return cls(load_key(directory / f"{name}.key"),
                   load_cert((directory / f"{name}.pem").read_bytes()))

    def save(self, directory: Path, name: str = "ca") -> None:
        write_private(directory / f"{name}.key", key_pem(self.key))
        (directory / f"{name}.pem").write_bytes(cert_pem(self.cert))

    def sign(self, csr_pem: bytes, *, common_name: str | None = None,
             names: list[str] | None = None, now: dt.datetime | None = None,
             validity: dt.timedelta = CERT_VALIDITY) -> x509.Certificate:
        """Issue a certificate for a CSR; `common_name`/`names` override what it asks for."""
        csr = x509.load_pem_x509_csr(csr_pem)
        if not csr.is_signature_valid:
            raise ValueError("the certificate request's signature is not valid")
        subject = csr.subject
        if common_name is not None:
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        if names is None:
            try:
                sans = list(csr.extensions.get_extension_for_class(
                    x509.SubjectAlternativeName).value)
            except x509.ExtensionNotFound:
                sans = []
        else:
            sans = _san(names)
        return self.issue(subject, csr.public_key(), sans,  # type: ignore[arg-type]
                          now=now or dt.datetime.now(dt.UTC), validity=validity)

    def issue(self, subject: x509.Name, public_key: PublicKey, sans: list[x509.GeneralName],
              *, now: dt.datetime, validity: dt.timedelta = CERT_VALIDITY) -> x509.Certificate:
        """A certificate for `public_key` (the key of a CSR, or one pinned earlier)."""
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid_from(now))
            .not_valid_after(min(now + validity, self.cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA256())


ENDORSEMENT_PURPOSE = b"overt endorses CA\0"


def endorse(ca: CertificateAuthority, other: x509.Certificate) -> str:
    """`ca`'s signature (hex) over another CA's certificate: how the server CA vouches for
    the node CA to nodes, without making it a CA they would build a chain through."""
    message = ENDORSEMENT_PURPOSE + other.public_bytes(serialization.Encoding.DER)
    return ca.key.sign(message, ec.ECDSA(hashes.SHA256())).hex()


def endorsed(ca: x509.Certificate, other: x509.Certificate, signature: str | None) -> bool:
    """Whether `signature` is `ca`'s endorsement of `other` (see `endorse`)."""
    key = ca.public_key()
    if signature is None or not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(bytes.fromhex(signature),
                   ENDORSEMENT_PURPOSE + other.public_bytes(serialization.Encoding.DER),
                   ec.ECDSA(hashes.SHA256()))
    except (ValueError, InvalidSignature):
        return False
    return True


def host_uuid_of(cert: x509.Certificate) -> uuid.UUID | None:
    """The node identity a certificate carries (SAN urn:uuid:...), if any."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in sans.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith("urn:uuid:"):
            try:
                return uuid.UUID(uri.removeprefix("urn:uuid:"))
            except ValueError:
                return None
    return None
