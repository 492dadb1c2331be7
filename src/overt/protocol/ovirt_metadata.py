"""oVirt's on-storage metadata format (KEY=VALUE lines), shared by the nodes that write
it and the engine that renders an iSCSI domain's metadata area."""

from __future__ import annotations

import hashlib

CHECKSUM_KEY = "_SHA_CKSUM"


def parse_metadata(text: str) -> dict[str, str]:
    """oVirt's KEY=VALUE lines (up to an `EOF` line in volume metadata)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() == "EOF":
            break
        key, sep, value = line.partition("=")
        if sep and key.strip():
            found[key.strip()] = value.strip()
    return found


def render_metadata(values: dict[str, str], *, checksum: bool, eof: bool) -> bytes:
    """Sorted KEY=VALUE lines; domain metadata carries oVirt's SHA-1 of its lines."""
    lines = [f"{key}={value}" for key, value in sorted(values.items()) if key != CHECKSUM_KEY]
    if checksum:
        digest = hashlib.sha1(usedforsecurity=False)
        for line in lines:
            digest.update(line.encode())
        lines.append(f"{CHECKSUM_KEY}={digest.hexdigest()}")
    if eof:
        lines.append("EOF")
    return ("\n".join(lines) + "\n").encode()
