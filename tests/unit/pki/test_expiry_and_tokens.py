"""Pure rules of the trust chain: when certificates renew and alert, token proofs, and a
renewed CA that keeps what it issued valid."""

from __future__ import annotations

import datetime as dt
import uuid

from cryptography import x509

from overt.pki import tokens
from overt.pki.certs import (
    CertificateAuthority,
    certificate_request,
    csr_key_fingerprint,
    key_fingerprint,
    new_key,
    same_fingerprint,
)
from overt.pki.expiry import Expiry, expiry_of

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def _node_cert(ca: CertificateAuthority, now: dt.datetime = NOW) -> x509.Certificate:
    csr = certificate_request(new_key(), "n", [f"urn:uuid:{uuid.uuid4()}"])
    return ca.sign(csr, now=now)


def test_a_node_certificate_renews_a_third_of_its_life_ahead_and_alerts_at_30_days() -> None:
    cert = _node_cert(CertificateAuthority.create("t", now=NOW))
    end = cert.not_valid_after_utc
    assert expiry_of(cert, NOW) is Expiry.OK
    assert expiry_of(cert, end - dt.timedelta(days=276)) is Expiry.OK
    assert expiry_of(cert, end - dt.timedelta(days=274)) is Expiry.RENEW
    assert expiry_of(cert, end - dt.timedelta(days=29)) is Expiry.ALERT
    assert expiry_of(cert, end) is Expiry.EXPIRED


def test_certificates_are_never_dated_after_the_real_time() -> None:
    ahead = dt.datetime.now(dt.UTC) + dt.timedelta(days=1000)
    cert = _node_cert(CertificateAuthority.create("t", now=ahead), now=ahead)
    assert cert.not_valid_before_utc <= dt.datetime.now(dt.UTC)
    assert cert.not_valid_after_utc > ahead + dt.timedelta(days=800)


def test_a_renewed_ca_still_verifies_what_it_issued() -> None:
    ca = CertificateAuthority.create("t", now=NOW)
    issued = _node_cert(ca)
    renewed = ca.renewed(NOW + dt.timedelta(days=3000))
    assert renewed.cert.not_valid_after_utc > ca.cert.not_valid_after_utc
    issued.verify_directly_issued_by(renewed.cert)  # raises if not


def test_token_proofs_bind_the_ca_and_the_key() -> None:
    token, ca_fp = tokens.new_token(), "AA:BB"
    stored = tokens.digest(token)
    assert token not in stored and len(stored) == 64  # what the engine keeps
    exchange = tokens.ExchangeKey()
    proof = tokens.engine_proof(stored, ca_fp, exchange.public)
    assert tokens.check(proof, tokens.engine_proof(tokens.digest(token), ca_fp, exchange.public))
    assert not tokens.check(proof, tokens.engine_proof(tokens.digest("x"), ca_fp,
                                                       exchange.public))
    assert not tokens.check(proof, tokens.engine_proof(stored, ca_fp,
                                                       tokens.ExchangeKey().public))
    key = key_fingerprint(new_key().public_key())
    sealed = tokens.seal(token, exchange.public, key, ca_fp)
    assert token not in sealed
    assert tokens.matches(stored, exchange.unseal(sealed, key, ca_fp))
    assert exchange.unseal(sealed, key, "CC:DD") is None  # another CA
    assert exchange.unseal(sealed, key_fingerprint(new_key().public_key()), ca_fp) is None
    assert tokens.ExchangeKey().unseal(sealed, key, ca_fp) is None  # not sealed for it
    altered = sealed[:-2] + ("00" if sealed[-2:] != "00" else "11")  # always differs
    assert exchange.unseal(altered, key, ca_fp) is None
    assert exchange.unseal("zz", key, ca_fp) is None and exchange.unseal(None, key, ca_fp) is None
    assert not tokens.matches(stored, "guess") and not tokens.matches(None, token)


def test_fingerprints_compare_as_administrators_type_them() -> None:
    key = new_key()
    fp = key_fingerprint(key.public_key())
    assert csr_key_fingerprint(certificate_request(key, "n", ["urn:uuid:x"]).decode()) == fp
    assert same_fingerprint(fp.lower().replace(":", " "), fp)
    assert not same_fingerprint(None, fp)
    assert not same_fingerprint(key_fingerprint(new_key().public_key()), fp)
