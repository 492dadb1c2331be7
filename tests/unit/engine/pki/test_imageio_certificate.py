"""A node's imageio certificate: the server CA's, for the node's own key and address only."""

from __future__ import annotations

import ipaddress
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID

from overt.engine.pki.authority import EnginePki
from overt.pki.certs import CertificateAuthority, cert_pem, load_cert, new_key


def _node_pem(tmp_path: Path) -> tuple[str, PublicKeyTypes]:
    """A node certificate of some other CA: only its public key matters here."""
    key = new_key()
    other = CertificateAuthority.create("some node CA")
    cert = other.issue(x509.Name([]), key.public_key(), [], now=other.cert.not_valid_before_utc)
    return cert_pem(cert).decode(), key.public_key()


def test_the_certificate_names_the_hosts_address_for_the_nodes_own_key(tmp_path: Path) -> None:
    pki = EnginePki(tmp_path / "pki", addresses=[])
    pki.ensure()
    node_pem, public_key = _node_pem(tmp_path)
    host = uuid.uuid4()
    cert = load_cert(pki.issue_imageio_certificate(node_pem, host, "10.1.2.3").encode())
    cert.verify_directly_issued_by(pki.ca.cert)  # what the SDK's clients trust
    assert cert.public_key() == public_key  # the node's key: no private key travels
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.1.2.3")]
    assert sans.get_values_for_type(x509.DNSName) == []
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]  # never a client of anyone
    named = load_cert(pki.issue_imageio_certificate(node_pem, host, "node1.lab").encode())
    assert named.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        .get_values_for_type(x509.DNSName) == ["node1.lab"]


@pytest.mark.parametrize("address", ["engine", "ENGINE", "localhost"])
def test_a_node_never_gets_the_engines_name(tmp_path: Path, address: str) -> None:
    pki = EnginePki(tmp_path / "pki", addresses=[])
    pki.ensure()
    node_pem, _ = _node_pem(tmp_path)
    with pytest.raises(ValueError, match="cannot be named"):
        pki.issue_imageio_certificate(node_pem, uuid.uuid4(), address)
