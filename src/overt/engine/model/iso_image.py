"""Whether bytes are an ISO 9660 image: what an upload into an ISO disk must be.

ISO 9660 puts its first volume descriptor at sector 16 (byte 32768, 2048-byte sectors):
a type byte, then the standard identifier `CD001`, then version 1. UDF-only images (some
DVD installers) carry the same descriptor for their bridge format, so they pass too.
"""

from __future__ import annotations

DESCRIPTOR_OFFSET = 16 * 2048
HEADER_BYTES = DESCRIPTOR_OFFSET + 7  # read this much of an upload to judge it
_IDENTIFIER = b"CD001"


def is_iso9660(head: bytes) -> bool:
    """True when `head` (the image's first HEADER_BYTES or more) starts an ISO 9660 image."""
    descriptor = head[DESCRIPTOR_OFFSET:DESCRIPTOR_OFFSET + 7]
    return len(descriptor) == 7 and descriptor[1:6] == _IDENTIFIER and descriptor[6] == 1
