"""Free ports for the servers tests start."""

from __future__ import annotations

import random
import socket
from pathlib import Path


def _below_ephemeral() -> range:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default
    return range(max(low - 10000, 10000), max(low, 11000))


# Ports for the servers tests start. A port the kernel picks (bind to port 0) is in its
# ephemeral range, which outgoing connections of every process on the machine draw their
# source ports from: between the check and the server's own bind, one of them can take it
# (the server then fails to start, a rare "address in use" under load). These are drawn
# below that range instead, at random (test processes side by side seldom draw the same),
# and never twice in one process.
_SERVER_PORTS = _below_ephemeral()
_given: set[int] = {25672}  # RabbitMQ's inter-node port: the broker binds it when it starts


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on and no connection will take."""
    for _ in range(1000):
        port = random.choice(_SERVER_PORTS)  # noqa: S311 (spreading, not secrecy)
        if port in _given:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free port in {_SERVER_PORTS}")
