"""cloud-init initialization: what is refused (before anything is stored), and secrecy."""

from __future__ import annotations

import base64

import pytest

from overt.engine.model.errors import InvalidInput
from overt.engine.model.initialization import (
    MAX_CUSTOM_SCRIPT_BYTES,
    Initialization,
    NicBootProtocol,
    NicConfiguration,
    check_initialization,
    check_ssh_key,
)

ED25519 = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP34SiWpX97gj29sZsH/6YdxLfI36Wj6vbRXY/OxvEQz "
           "alice@laptop")
ECDSA = ("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMf7uOBw6KEth2"
         "WU96hf8lsxQUMcLB/vZctF0YuUpcgqhPnv8jjW4mFYpdxI55rkUdDF1+iSsfrgI3edy7GQeWM=")
FULL = Initialization(
    host_name="web1.example.com", user_name="alice", root_password="S3cret!pw",
    authorized_ssh_keys=f"{ED25519}\n\n{ECDSA}\n", dns_servers="10.0.0.53 2001:db8::53",
    dns_search="example.com lab.example.com",
    nic_configurations=(NicConfiguration(name="eth0", boot_protocol=NicBootProtocol.STATIC,
                                         address="10.0.0.10", netmask="255.255.255.0",
                                         gateway="10.0.0.1"),
                        NicConfiguration(name="eth1", on_boot=False)),
    custom_script="runcmd:\n  - [touch, /tmp/ran]\n", timezone="Europe/Paris")


def test_a_sound_initialization_passes_and_survives_its_json_form() -> None:
    assert check_initialization(FULL) is FULL
    assert Initialization.from_json(FULL.to_json()) == FULL
    assert FULL.ssh_keys() == [ED25519, ECDSA]


def test_the_root_password_is_never_shown_nor_in_a_repr() -> None:
    assert FULL.public().root_password is None
    assert FULL.public().host_name == "web1.example.com"
    assert "S3cret" not in repr(FULL)


@pytest.mark.parametrize(("init", "words"), [
    (Initialization(authorized_ssh_keys="not a key"), "key 1 is not an OpenSSH public key"),
    (Initialization(authorized_ssh_keys=f"{ED25519}\nssh-ed25519 AAAA!!notbase64"),
     "key 2 is not an OpenSSH public key: its key data is not valid base64"),
    # valid base64 whose blob names another key type
    (Initialization(authorized_ssh_keys="ssh-rsa " + ED25519.split()[1]),
     "does not hold a key of the type it names"),
    (Initialization(authorized_ssh_keys="ssh-ed25519"), "does not start with a known key type"),
    # the type's name, then a key cut short, or a whole key with bytes after it
    (Initialization(authorized_ssh_keys="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP34 x"),
     "its key data is truncated"),
    (Initialization(authorized_ssh_keys="ssh-ed25519 " + base64.b64encode(
        base64.b64decode(ED25519.split()[1]) + b"\0\0\0\1x").decode()),
     "does not hold a whole key of that type"),
    (Initialization(custom_script="x" * (MAX_CUSTOM_SCRIPT_BYTES + 1)),
     "the limit is 65536 bytes (64 KiB)"),
    (Initialization(host_name="-web"), "not a valid host name (RFC 1123)"),
    (Initialization(host_name="web_1"), "not a valid host name"),
    (Initialization(host_name="a" * 64), "not a valid host name"),
    (Initialization(host_name="web..example"), "not a valid host name"),
    (Initialization(host_name=".".join(["a" * 60] * 5)), "not a valid host name"),
    (Initialization(user_name="Root User"), "not a valid user name"),
    (Initialization(dns_servers="10.0.0.1 dns.example.com"), "is not an IP address"),
    (Initialization(dns_search="bad_domain"), "initialization.dns_search"),
    (Initialization(timezone="Europe/Paris; rm -rf /"), "not a time zone name"),
    (Initialization(root_password=""), "root_password must have 1 to"),
    (Initialization(nic_configurations=(
        NicConfiguration(name="eth0", boot_protocol=NicBootProtocol.STATIC),)),
     "a static NIC needs ip.address and ip.netmask"),
    (Initialization(nic_configurations=(
        NicConfiguration(name="eth0", boot_protocol=NicBootProtocol.STATIC, address="10.0.0.300",
                         netmask="255.255.255.0"),)), "eth0"),
    (Initialization(nic_configurations=(NicConfiguration(name="eth0"),
                                        NicConfiguration(name="eth0"))), "names a NIC twice"),
])
def test_bad_initialization_is_refused(init: Initialization, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_initialization(init)
    assert words in str(caught.value)


def test_a_script_of_exactly_64_kib_is_accepted() -> None:
    check_initialization(Initialization(custom_script="x" * MAX_CUSTOM_SCRIPT_BYTES))


def test_a_refused_key_is_not_echoed_back() -> None:
    """Keys are not secret, but a pasted private key would be: messages name positions."""
    with pytest.raises(InvalidInput) as caught:
        check_ssh_key("-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjEAAAAA", 3)
    assert "key 3" in str(caught.value) and "b3BlbnNz" not in str(caught.value)


def test_a_63_character_label_and_a_253_character_name_are_valid() -> None:
    check_initialization(Initialization(host_name="a" * 63))
    check_initialization(Initialization(host_name=".".join(["a" * 63] * 3 + ["b" * 61])))
