"""The fence_kdump message (magic 0x1B302A40, version 1): accepted in both byte orders
(`fence_kdump_send` writes its host's order, the sources say network order); anything else
is no message."""

import struct

import pytest

from overt.engine.monitor.kdump_listener import is_kdump_message, sender_address


@pytest.mark.parametrize("data", [
    bytes.fromhex("402a301b01000000"),  # what fence_kdump_send sends on x86
    struct.pack("!II", 0x1B302A40, 1),
    bytes.fromhex("402a301b01000000") + b"trailing",
])
def test_fence_kdump_messages(data: bytes) -> None:
    assert is_kdump_message(data)


@pytest.mark.parametrize("data", [
    b"", bytes.fromhex("402a301b"), bytes.fromhex("402a301b02000000"),
    bytes.fromhex("412a301b01000000"), b"GET / HTTP/1.0\r\n",
])
def test_other_datagrams(data: bytes) -> None:
    assert not is_kdump_message(data)


def test_sender_addresses_compare_as_hosts_are_recorded() -> None:
    assert sender_address("::ffff:192.0.2.7") == "192.0.2.7"
    assert sender_address("2001:db8::1") == "2001:db8::1"
    assert sender_address("192.0.2.7") == "192.0.2.7"
