"""Secrets the engine must give back to a tool later (a BMC's password), sealed at rest.

The database holds only AES-256-GCM ciphertext; the key is a file of the engine's data
directory (mode 0600, beside its PKI), so a database dump or backup alone reveals nothing.
`Secret` wraps the clear text so that it never shows in a repr, a log line or a traceback."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_FILE = "secrets.key"
_PREFIX = "v1:"


def is_sealed(text: str) -> bool:
    """Whether `text` is a secret sealed by a `SecretBox` (not clear text)."""
    return text.startswith(_PREFIX)


class Secret:
    """A clear-text secret that prints as `***`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


class SecretBox:
    """Seals and opens secrets with the engine's key (made on first use)."""

    def __init__(self, directory: Path) -> None:
        self.key_file = directory / KEY_FILE

    def _key(self) -> bytes:
        try:
            return self.key_file.read_bytes()
        except FileNotFoundError:
            pass
        self.key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = AESGCM.generate_key(bit_length=256)
        try:  # O_EXCL: of two engine parts starting at once, one key wins
            fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return self.key_file.read_bytes()
        with os.fdopen(fd, "wb") as out:
            out.write(key)
        return key

    def seal(self, secret: Secret) -> str:
        if not secret.reveal():
            return ""
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self._key()).encrypt(nonce, secret.reveal().encode(), None)
        return _PREFIX + base64.b64encode(nonce + sealed).decode()

    def open(self, sealed: str) -> Secret:
        """The secret behind `sealed`; a `ValueError` (never the text) if it cannot be opened."""
        if not sealed:
            return Secret("")
        if not sealed.startswith(_PREFIX):
            raise ValueError("not a sealed secret")
        raw = base64.b64decode(sealed[len(_PREFIX):])
        try:
            return Secret(AESGCM(self._key()).decrypt(raw[:12], raw[12:], None).decode())
        except InvalidTag:
            raise ValueError("the secret was sealed with another engine key") from None

