"""One-time enrollment tokens: proofs that tie an engine and a node that share one.

`overt host add` issues a token; the administrator starts the node with it
(`overt node --enroll-token`). The engine keeps only its digest (`digest`): its
database never holds a token in clear. The token itself never crosses the network
in clear either:

- the engine introduces its CA with an HMAC keyed with the token's digest, over the
  CA's fingerprint and a one-time exchange key of this enrollment: the node, which
  computes the digest from its token, knows the CA and the key are the token issuer's;
- the node answers with the token sealed for that exchange key (ECDH, AES-GCM), bound
  to its own key's and the CA's fingerprints: only the engine that made the exchange
  key can open it, and a party in between can neither read it nor move it to another
  key. The engine compares the opened token's digest with the one it keeps, in
  constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

DIGEST_PURPOSE = b"overt enrollment token\0"
ENGINE_CA_PURPOSE = b"overt engine ca\0"
SEAL_PURPOSE = b"overt sealed token\0"
MAX_TOKEN = 128


def new_token() -> str:
    return secrets.token_urlsafe(24)


def digest(token: str) -> str:
    """What the engine keeps of a token (SHA-256, hex)."""
    return hashlib.sha256(DIGEST_PURPOSE + token.encode()).hexdigest()


def matches(stored_digest: str | None, token: str | None) -> bool:
    """Whether `token` is the one whose digest the engine keeps (constant time)."""
    if stored_digest is None or token is None:
        return False
    return hmac.compare_digest(digest(token), stored_digest)


def _mac(token_digest: str, purpose: bytes, *parts: str) -> str:
    message = purpose + b"\0".join(p.upper().encode() for p in parts)
    return hmac.new(bytes.fromhex(token_digest), message, hashlib.sha256).hexdigest()


def engine_proof(token_digest: str, ca_fingerprint: str, exchange_key: str) -> str:
    """The engine's proof that the CA and exchange key it introduces are the token
    issuer's (keyed with the token's digest, which the engine keeps and the node computes)."""
    return _mac(token_digest, ENGINE_CA_PURPOSE, ca_fingerprint, exchange_key)


def check(expected: str, offered: str | None) -> bool:
    return offered is not None and hmac.compare_digest(expected, offered)


class ExchangeKey:
    """The engine's one-time key of one enrollment: nodes seal their token for it."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())

    @property
    def public(self) -> str:
        return _point(self._key.public_key())

    def unseal(self, sealed: str | None, key_fingerprint: str,
               ca_fingerprint: str) -> str | None:
        """The token a node sealed for this key, bound to its key and the CA; None if it
        is not one (another key, another CA, altered, or not sealed for this key)."""
        if not sealed:
            return None
        try:
            raw = bytes.fromhex(sealed)
            peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw[:33])
            nonce, box = raw[33:45], raw[45:]
            key = _box_key(self._key.exchange(ec.ECDH(), peer))
            token = AESGCM(key).decrypt(nonce, box, _bound(key_fingerprint, ca_fingerprint))
            return token.decode()
        except (ValueError, InvalidTag, UnicodeDecodeError):
            return None


def seal(token: str, exchange_key: str, key_fingerprint: str, ca_fingerprint: str) -> str:
    """The node's answer: its token, readable only by the holder of `exchange_key`, bound
    to the node's key and the CA it was introduced to."""
    engine = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(),
                                                          bytes.fromhex(exchange_key))
    mine = ec.generate_private_key(ec.SECP256R1())
    key = _box_key(mine.exchange(ec.ECDH(), engine))
    nonce = os.urandom(12)
    box = AESGCM(key).encrypt(nonce, token.encode()[:MAX_TOKEN],
                              _bound(key_fingerprint, ca_fingerprint))
    return (bytes.fromhex(_point(mine.public_key())) + nonce + box).hex()


def _point(key: ec.EllipticCurvePublicKey) -> str:
    return key.public_bytes(serialization.Encoding.X962,
                            serialization.PublicFormat.CompressedPoint).hex()


def _box_key(shared: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=SEAL_PURPOSE).derive(shared)


def _bound(key_fingerprint: str, ca_fingerprint: str) -> bytes:
    def norm(value: str) -> bytes:
        return "".join(c for c in value.upper() if c in "0123456789ABCDEF").encode()
    return SEAL_PURPOSE + norm(key_fingerprint) + b"\0" + norm(ca_fingerprint)
