"""One-time enrollment tokens: proofs that tie an engine and a node that share one.

`overt host add` issues a token; the administrator starts the node with it
(`overt node --enroll-token`). The token itself never crosses the network: each
side proves it knows it with an HMAC over what the other must trust, so that a
party in between can neither learn it nor swap the engine's CA or the node's key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

ENGINE_CA_PURPOSE = b"overt engine ca\0"
NODE_KEY_PURPOSE = b"overt node key\0"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _mac(token: str, purpose: bytes, *parts: str) -> str:
    message = purpose + b"\0".join(p.upper().encode() for p in parts)
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def engine_proof(token: str, ca_fingerprint: str) -> str:
    """The engine's proof that the CA it introduces is the one of the token's issuer."""
    return _mac(token, ENGINE_CA_PURPOSE, ca_fingerprint)


def node_proof(token: str, key_fingerprint: str, ca_fingerprint: str) -> str:
    """The node's proof that the key it asks a certificate for is the token holder's."""
    return _mac(token, NODE_KEY_PURPOSE, key_fingerprint, ca_fingerprint)


def check(expected: str, offered: str | None) -> bool:
    return offered is not None and hmac.compare_digest(expected, offered)
