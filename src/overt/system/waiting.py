"""Waiting for something on this machine to become true, with a deadline."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


class NotReady(TimeoutError):
    """What was awaited did not happen before the deadline."""


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, every: float = 0.05
) -> None:
    """Poll `check` until it is true; raise NotReady naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() >= deadline:
            raise NotReady(f"{what} did not happen within {timeout:g} s")
        time.sleep(every)


def unix_socket_answers(path: str) -> bool:
    """True when something accepts connections on the unix socket at `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def tcp_port_answers(host: str, port: int, *, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
