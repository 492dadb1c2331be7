"""What the kernel command line of a provisioned node says about its engine: the network
services put `overt.engine=URL` and `overt.ca_fingerprint=HEX` there when it boots from a
provisioning profile (DNS SRV `_overt._tcp` is the fallback)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CMDLINE = Path("/proc/cmdline")


@dataclass(frozen=True)
class BootArgs:
    engine_url: str | None = None
    ca_fingerprint: str | None = None
    profile: str | None = None


def parse(cmdline: str) -> BootArgs:
    values: dict[str, str] = {}
    for word in cmdline.split():
        key, sep, value = word.partition("=")
        if sep and key.startswith("overt.") and value:
            values[key] = value
    url = values.get("overt.engine")
    return BootArgs(engine_url=url if url and url.startswith("https://") else None,
                    ca_fingerprint=values.get("overt.ca_fingerprint"),
                    profile=values.get("overt.profile"))


def read(path: Path = CMDLINE) -> BootArgs:
    try:
        return parse(path.read_text())
    except OSError:
        return BootArgs()
