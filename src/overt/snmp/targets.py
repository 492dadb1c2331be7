"""Trap targets written `HOST[:PORT]`, checked before anything is kept or sent."""

from __future__ import annotations

import ipaddress
import re

DEFAULT_TRAP_PORT = 162


def parse_target(text: str) -> tuple[str, int]:
    """`HOST[:PORT]` (an IPv6 address in brackets with a port) -> (host, port); port 162
    by default. HOST is an IP address or a DNS name. A ValueError says what is wrong."""
    text = text.strip()
    host, port = text, str(DEFAULT_TRAP_PORT)
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"bad SNMP trap target {text!r} (HOST[:PORT])")
        port = rest[1:] if rest else port
        if not _is_ip(host, 6):
            raise ValueError(f"bad SNMP trap target {text!r}: {host!r} is not an IPv6 address")
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif ":" in text and not _is_ip(text, 6):
        raise ValueError(f"bad SNMP trap target {text!r} (HOST[:PORT])")
    check_host_port(host, port, text)
    return host, int(port)


def check_host_port(host: str, port: str | int, shown: str) -> None:
    port = str(port)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad SNMP trap target {shown!r}: the port must be 1-65535")
    is_name = _DNS_NAME.fullmatch(host) and not host.rsplit(".", 1)[-1].isdigit()
    if not (_is_ip(host, 4) or _is_ip(host, 6) or is_name):
        raise ValueError(f"bad SNMP trap target {shown!r}: {host!r} is not an address or name")


def peer(host: str, port: int) -> str:
    """net-snmp's transport address for (host, port)."""
    return f"udp6:[{host}]:{port}" if ":" in host else f"udp:{host}:{port}"


_DNS_NAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                       r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False
