"""What a node trusts: only a CA it was given (file, fingerprint, token), and that CA's
renewal (same key and name) but no other."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest

from overt.node.identity import IdentityError, NodeIdentity
from overt.pki import tokens
from overt.pki.certs import CertificateAuthority, cert_pem, endorse, fingerprint
from overt.protocol.enrollment import EnrollmentGrant, EnrollmentStatus


def _pem(ca: CertificateAuthority) -> str:
    return cert_pem(ca.cert).decode()


def test_a_node_given_nothing_trusts_no_engine(tmp_path: Path) -> None:
    identity = NodeIdentity(tmp_path)
    with pytest.raises(IdentityError, match="trusts no engine yet"):
        identity.trust_ca(_pem(CertificateAuthority.create("any")))
    assert identity.trusted_ca_file() is None


def test_a_fingerprint_or_a_token_proof_admits_only_its_ca(tmp_path: Path) -> None:
    engine, intruder = CertificateAuthority.create("engine"), CertificateAuthority.create("x")
    by_fp = NodeIdentity(tmp_path / "fp", ca_fingerprint=fingerprint(engine.cert).lower())
    with pytest.raises(IdentityError, match="not the one this node was told to trust"):
        by_fp.trust_ca(_pem(intruder))
    by_fp.trust_ca(_pem(engine))
    assert by_fp.trusted_ca_file() == by_fp.ca_file

    token = tokens.new_token()
    by_token = NodeIdentity(tmp_path / "token", enroll_token=token)
    stored, exchange = tokens.digest(token), tokens.ExchangeKey().public
    with pytest.raises(IdentityError):  # the intruder does not know the token
        by_token.trust_ca(_pem(intruder), tokens.engine_proof(
            tokens.digest("guess"), fingerprint(intruder.cert), exchange), exchange)
    with pytest.raises(IdentityError):  # a proof made for another CA
        by_token.trust_ca(_pem(intruder), tokens.engine_proof(
            stored, fingerprint(engine.cert), exchange), exchange)
    with pytest.raises(IdentityError):  # a proof made for another exchange key
        by_token.trust_ca(_pem(engine), tokens.engine_proof(
            stored, fingerprint(engine.cert), exchange), tokens.ExchangeKey().public)
    by_token.trust_ca(_pem(engine), tokens.engine_proof(stored, fingerprint(engine.cert),
                                                        exchange), exchange)
    assert by_token.ca_file.read_text() == _pem(engine)


def test_a_renewed_ca_replaces_the_configured_one_but_another_does_not(tmp_path: Path) -> None:
    engine = CertificateAuthority.create("engine")
    configured = tmp_path / "ca.pem"
    configured.write_text(_pem(engine))
    identity = NodeIdentity(tmp_path / "node", configured)
    assert not identity.accept_renewed_ca(_pem(CertificateAuthority.create("engine")))
    assert identity.trusted_ca_file() == configured
    renewed = engine.renewed(dt.datetime.now(dt.UTC) + dt.timedelta(days=3000))
    assert identity.accept_renewed_ca(_pem(renewed))
    assert identity.trusted_ca_file() == identity.ca_file
    assert identity.ca_file.read_text() == _pem(renewed)


def test_a_grant_is_taken_only_from_the_node_ca_the_trusted_server_ca_endorsed(
        tmp_path: Path) -> None:
    server, node_ca, stranger = (CertificateAuthority.create(n)
                                 for n in ("server", "node", "stranger"))
    configured = tmp_path / "ca.pem"
    configured.write_text(_pem(server))
    identity = NodeIdentity(tmp_path / "node", configured)
    host = uuid.uuid4()

    def grant(ca: CertificateAuthority, endorsement: str | None) -> EnrollmentGrant:
        cert = ca.sign(identity.csr_pem(host, [f"urn:uuid:{host}"]).encode(),
                       names=[f"urn:uuid:{host}"])
        return EnrollmentGrant(status=EnrollmentStatus.APPROVED,
                               certificate_pem=cert_pem(cert).decode(), node_ca_pem=_pem(ca),
                               node_ca_endorsement=endorsement)

    for refused in (grant(stranger, None), grant(stranger, endorse(stranger, stranger.cert)),
                    grant(stranger, endorse(server, node_ca.cert))):
        with pytest.raises(IdentityError, match="not vouched for"):
            identity.accept_grant(refused, host, "https://engine:8444")
    assert not identity.cert_file.exists()
    identity.accept_grant(grant(node_ca, endorse(server, node_ca.cert)), host,
                          "https://engine:8444")
    assert identity.enrolled(host)


def test_a_certificate_of_the_engine_ca_itself_is_one_to_move_off(tmp_path: Path) -> None:
    """An engine of one CA signed nodes with the CA the node trusts; an engine with a node
    CA does not: only the first makes the node renew early."""
    server, node_ca = CertificateAuthority.create("engine"), CertificateAuthority.create("n")
    identity = NodeIdentity(tmp_path)
    identity.ca_file.write_text(_pem(server))
    host = uuid.uuid4()
    csr = identity.csr_pem(host, [f"urn:uuid:{host}"]).encode()
    assert not identity.on_pre_split_ca()  # no certificate yet
    identity.cert_file.write_bytes(cert_pem(server.sign(csr, common_name=str(host))))
    assert identity.on_pre_split_ca()
    identity.cert_file.write_bytes(cert_pem(node_ca.sign(csr, common_name=str(host))))
    assert not identity.on_pre_split_ca()
    impostor = CertificateAuthority.create("engine")  # same name, another key
    identity.cert_file.write_bytes(cert_pem(impostor.sign(csr, common_name=str(host))))
    assert not identity.on_pre_split_ca()
