"""snmptrap's command line and configuration for v2c and v3: no secret on the command line
or in a repr; engine ids and secrets checked before they are kept."""

from __future__ import annotations

import pytest

from overt.snmp.trap import V3, V2c, check_engine_id, check_secret, command

TRAP = (1, 3, 6, 1, 4, 1, 99999, 2, 0, 1)


def test_v2c_keeps_its_community_off_the_command_line() -> None:
    creds = V2c("s3cret-community")
    line = command("10.0.0.9", 1162, creds, TRAP, [((1, 3, 6, 1, 4, 1, 99999, 2, 1, 2, 0), "s",
                                                    "vm_down_error")])
    assert line[:5] == ["snmptrap", "-v", "2c", "-Ln", "udp:10.0.0.9:1162"]
    assert line[5:] == ["", ".1.3.6.1.4.1.99999.2.0.1", ".1.3.6.1.4.1.99999.2.1.2.0", "s",
                        "vm_down_error"]
    assert "s3cret-community" not in " ".join(line) + repr(creds)
    assert "defCommunity s3cret-community" in creds.conf()


def test_v3_is_auth_priv_with_sha_and_aes_and_its_engine_id() -> None:
    creds = V3("overt", "auth-pass-123", "priv-pass-456", "0x80001f88041122334455")
    line = command("::1", 162, creds, TRAP, [])
    assert line[:6] == ["snmptrap", "-v", "3", "-e", "0x80001f88041122334455", "-Ln"]
    assert line[6] == "udp6:[::1]:162"
    text = " ".join(line) + repr(creds)
    assert "auth-pass-123" not in text and "priv-pass-456" not in text
    conf = creds.conf()
    for wanted in ("defSecurityLevel authPriv", "defAuthType SHA", "defPrivType AES",
                   "defSecurityName overt", "defAuthPassphrase auth-pass-123",
                   "defPrivPassphrase priv-pass-456"):
        assert wanted in conf


@pytest.mark.parametrize("text", ["", "zz", "0x1234", "0x" + "ab" * 33, "80001f88 04"])
def test_bad_engine_ids_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="engine id"):
        check_engine_id(text)


def test_an_engine_id_is_written_with_0x() -> None:
    assert check_engine_id("80001f880411223344") == "0x80001f880411223344"


@pytest.mark.parametrize("text", ["", "two words", "line\nbreak", "x" * 256])
def test_secrets_snmp_conf_cannot_carry_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        check_secret("community", text)


def test_a_short_passphrase_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 8"):
        check_secret("auth_passphrase", "short", min_length=8)
