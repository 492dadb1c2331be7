"""Sealed secrets: what the database holds is ciphertext that only this engine's key opens."""

from __future__ import annotations

from pathlib import Path

import pytest

from overt.engine.secrets import Secret, SecretBox


def test_sealed_secret_opens_only_with_its_key(tmp_path: Path) -> None:
    box = SecretBox(tmp_path / "a")
    sealed = box.seal(Secret("Bmc-pw-1"))
    assert "Bmc-pw-1" not in sealed and sealed.startswith("v1:")
    assert sealed != box.seal(Secret("Bmc-pw-1"))  # a fresh nonce each time
    assert box.open(sealed).reveal() == "Bmc-pw-1"
    assert (tmp_path / "a" / "secrets.key").stat().st_mode & 0o777 == 0o600
    assert SecretBox(tmp_path / "a").open(sealed).reveal() == "Bmc-pw-1"  # the key persists
    with pytest.raises(ValueError, match="another engine key") as refused:
        SecretBox(tmp_path / "b").open(sealed)
    assert "Bmc-pw-1" not in str(refused.value)


def test_a_secret_never_prints(tmp_path: Path) -> None:
    secret = Secret("Bmc-pw-2")
    assert "Bmc-pw-2" not in repr(secret) and "Bmc-pw-2" not in f"{secret} {[secret]}"
    assert SecretBox(tmp_path).seal(Secret("")) == ""
    assert SecretBox(tmp_path).open("").reveal() == ""
