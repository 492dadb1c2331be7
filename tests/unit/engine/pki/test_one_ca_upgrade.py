"""The engine's PKI on a data directory of one CA (before the node CA): what it keeps
accepting for nodes during the upgrade, and what it stops accepting after."""

from __future__ import annotations

import uuid
from pathlib import Path

from cryptography import x509

from overt.engine.pki.authority import EnginePki
from overt.pki.certs import CertificateAuthority, certificate_request, load_cert, new_key


def node_csr(host: uuid.UUID) -> bytes:
    return certificate_request(new_key(), str(host), [f"urn:uuid:{host}"])


def trusted(pki: EnginePki) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pki.node_trust_file.read_bytes())


def test_a_one_ca_directory_keeps_its_node_certificates_accepted_until_retired(
        tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    directory.mkdir()
    old = CertificateAuthority.create("Overt engine CA old1")
    old.save(directory, "ca")
    host = uuid.uuid4()
    legacy = old.sign(node_csr(host), common_name=str(host), names=[f"urn:uuid:{host}"])

    pki = EnginePki(directory, addresses=[])
    pki.ensure()
    assert pki.ca.cert == old.cert  # the old CA stays the server CA
    assert pki.legacy_ca() == old.cert
    assert trusted(pki) == [pki.node_ca.cert, old.cert]
    assert pki.issued_by_legacy_ca(legacy) and pki.accepted_for_node(legacy)
    moved = load_cert(pki.issue_node_certificate(node_csr(host).decode(), host).encode())
    assert pki.accepted_for_node(moved) and not pki.issued_by_legacy_ca(moved)
    # The engine's own certificate is the server CA's, never a node's.
    assert not pki.issued_by_node_ca(pki.engine_certificate())

    pki.ensure()  # a restart during the transition changes nothing
    assert pki.legacy_ca() == old.cert

    assert pki.retire_legacy_ca()
    assert not pki.retire_legacy_ca()
    assert pki.legacy_ca() is None
    assert trusted(pki) == [pki.node_ca.cert]
    assert pki.issued_by_legacy_ca(legacy) and not pki.accepted_for_node(legacy)
    assert pki.accepted_for_node(moved)
    pki.ensure()  # a restart after it does not bring the old CA back
    assert pki.legacy_ca() is None and not pki.accepted_for_node(legacy)


def test_a_new_directory_accepts_the_node_ca_only(tmp_path: Path) -> None:
    pki = EnginePki(tmp_path / "pki", addresses=[])
    pki.ensure()
    assert pki.legacy_ca() is None
    assert trusted(pki) == [pki.node_ca.cert]
    host = uuid.uuid4()
    by_server_ca = pki.ca.sign(node_csr(host), common_name=str(host),
                               names=[f"urn:uuid:{host}"])
    assert not pki.accepted_for_node(by_server_ca)
    assert not pki.retire_legacy_ca()
