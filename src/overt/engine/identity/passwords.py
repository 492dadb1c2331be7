"""Password hashes with scrypt (stdlib), in a self-describing string."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

_R, _P = 8, 1
# scrypt's cost (N) for new hashes: 36 ms of CPU a hash on this project's machines. A hash
# names its own cost, so checks follow whatever cost made it; the fast lane's test
# process lowers it (tests/conftest.py), since its engines make and check hundreds of
# hashes with the engine's code unchanged.
HASH_COST = 2**14


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    n = HASH_COST
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=_R, p=_P, dklen=32)
    encoded_salt = base64.b64encode(salt).decode()
    return f"scrypt${n}${_R}${_P}${encoded_salt}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str | None) -> bool:
    """True when `password` matches `stored`; constant time; False for no password."""
    if not stored:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                               r=int(r), p=int(p), dklen=len(base64.b64decode(digest)))
    return hmac.compare_digest(candidate, base64.b64decode(digest))


def generate_password() -> str:
    """A password for a new installation: 20 characters, URL-safe."""
    return secrets.token_urlsafe(15)
